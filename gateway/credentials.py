"""A tier's upstream credential: read from the environment or a secret file the policy names, never from the policy.

Resolved once, when the gateway loads the policy, into the header(s) the tier's provider expects; the key is never
logged and never shown (admin state shows `credential: "env:NAME"` / `"file:PATH"` / `null`). A tier with neither
field configured sends no credential at all: the client's own `Authorization` / `x-api-key` is dropped for every tier,
so an upstream that needs a key answers 401 (passed to the client as a client error) instead of receiving the
client's key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["CLIENT_AUTH_HEADERS", "CredentialError", "credential_headers", "credential_source"]

ANTHROPIC_VERSION = b"2023-06-01"
CLIENT_AUTH_HEADERS = frozenset({b"authorization", b"x-api-key", b"api-key", b"anthropic-version"})
"""Request headers never forwarded upstream (the client's credentials; the tier sets its own)."""


class CredentialError(ValueError):
    """A configured credential cannot be read; the message names the variable or file, never a key."""


def credential_source(spec: Any) -> str | None:
    """Where the tier's key comes from, safe to show."""
    if spec.api_key_env:
        return f"env:{spec.api_key_env}"
    if spec.api_key_file:
        return f"file:{spec.api_key_file}"
    return None


def _read_key(spec: Any, where: str) -> str | None:
    if spec.api_key_env:
        key = os.environ.get(spec.api_key_env, "").strip()
        if not key:
            raise CredentialError(f"{where}: api_key_env {spec.api_key_env} is not set (or empty) in the environment")
        return key
    if spec.api_key_file:
        path = Path(os.path.expandvars(os.path.expanduser(spec.api_key_file)))
        try:
            key = path.read_text().strip()
        except OSError as err:
            raise CredentialError(f"{where}: api_key_file {path}: {err.strerror or err}") from None
        if not key:
            raise CredentialError(f"{where}: api_key_file {path} is empty")
        return key
    return None


def credential_headers(spec: Any, where: str) -> list[tuple[bytes, bytes]]:
    """The headers a tier (or one of its deployments: `spec` is a TierSpec or a Deployment) sends upstream: its key
    in the provider's header (Bearer; Anthropic's `x-api-key`; Azure's `api-key`), plus the provider's fixed ones."""
    key = _read_key(spec, where)
    headers: list[tuple[bytes, bytes]] = []
    if spec.provider == "anthropic":
        headers.append((b"anthropic-version", ANTHROPIC_VERSION))
        if key is not None:
            headers.append((b"x-api-key", key.encode("latin-1")))
    elif key is not None and (spec.provider == "azure" or spec.azure is not None):
        headers.append((b"api-key", key.encode("latin-1")))
    elif key is not None:
        headers.append((b"authorization", b"Bearer " + key.encode("latin-1")))
    for _, value in headers:
        if b"\r" in value or b"\n" in value:
            raise CredentialError(f"{where}: the API key holds a line break")
    return headers
