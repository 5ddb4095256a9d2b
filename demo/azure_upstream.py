"""A fake Azure OpenAI resource: demo/upstream.py's OpenAI fake (same faults, `/control`, `/health`) on Azure's paths.

`POST /openai/deployments/{deployment}/chat/completions?api-version=...` (JSON or SSE, as the OpenAI fake), the key
in the `api-key` header. As Azure answers: an unknown deployment is 404 `DeploymentNotFound`, a missing api-version
404 `Resource not found`, a missing or wrong key 401 with `code: "401"`; a completion carries Azure's
`prompt_filter_results` and `content_filter_results`. The official SDK's `AzureOpenAI` client speaks to it unchanged
(tests/gateway/test_azure.py). `deployments`: the deployment names it serves. CLI (serving `gpt-4o`):
`python -m demo.upstream --api azure --name azure --port 9103 --api-key-env AZURE_KEY`.
"""

from __future__ import annotations

from typing import Any

from demo.upstream import Upstream, _json, _Request

__all__ = ["AzureUpstream"]

PREFIX = "/openai/deployments/"
FILTERS = {s: {"filtered": False, "severity": "safe"} for s in ("hate", "self_harm", "sexual", "violence")}


def _azure_error(status: int, code: str, message: str) -> bytes:
    return _json(status, {"error": {"code": code, "message": message}})


class AzureUpstream(Upstream):
    def __init__(self, deployments: tuple[str, ...] = ("gpt-4o",), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deployments = deployments
        self.last_deployment: str | None = None
        self.last_api_version: str | None = None

    def _route(self, req: _Request) -> bytes | None:
        """None when the path, deployment and api-version are Azure's; else Azure's answer."""
        if not req.path.startswith(PREFIX):
            return _azure_error(404, "404", "Resource not found")
        deployment, _, rest = req.path[len(PREFIX) :].partition("/")
        versions = [p[len("api-version=") :] for p in req.query.split("&") if p.startswith("api-version=")]
        if not versions or not versions[0]:
            return _azure_error(404, "404", "Resource not found")
        if deployment not in self.deployments or rest != "chat/completions":
            return _azure_error(
                404,
                "DeploymentNotFound",
                "The API deployment for this resource does not exist. If you created the deployment within the last "
                "5 minutes, please wait a moment and try again.",
            )
        self.last_deployment, self.last_api_version = deployment, versions[0]
        return None

    def answer(self, req: _Request) -> bytes | None:
        if req.path in ("/health", "/control"):
            return super().answer(req)
        if self.faults.outage:
            return super().answer(req)
        return self._route(req) or super().answer(req)

    def stream_plan(self, req: _Request) -> tuple[bytes, list[bytes], int | None] | bytes | None:
        if not self.faults.outage and (wrong := self._route(req)) is not None:
            return wrong
        return super().stream_plan(req)

    def _check_key(self, req: _Request) -> bytes | None:
        self.counters.last_auth = dict(req.headers)
        if self.api_key is not None and req.headers.get("api-key") != self.api_key:
            return _azure_error(
                401,
                "401",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
                "key for an active subscription and use a correct regional API endpoint for your resource.",
            )
        return None

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        done = super()._completion(body)
        done["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": FILTERS}]
        done["choices"][0]["content_filter_results"] = FILTERS
        return done
