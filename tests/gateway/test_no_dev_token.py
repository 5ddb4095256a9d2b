"""Issue 11.7 at the gateway: started without GOVERNOR_GATEWAY_TOKEN it accepted the well-known `Bearer dev-token`.
Now an unset token locks the admin API (every admin call 401 or 403) while the data plane serves."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from demo.upstream import run_upstream
from tests.gateway.conftest import CHAT
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


async def test_a_gateway_without_a_token_refuses_every_admin_call(tmp_path: Path) -> None:
    async with run_upstream(name="primary") as up:
        (tmp_path / "chat.yaml").write_text(
            "service: chat\ndependencies: [{name: p, tier: tier_0_primary}]\n"
            f"chain: [{{tier: tier_0_primary, upstream: '{up.url}'}}]\n"
        )
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "GOVERNOR_GATEWAY_TOKEN"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "--policy-dir", str(tmp_path), "--port", str(port),
            env={**env, "GOVERNOR_LOG_FORMAT": "json"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            lines = []
            while True:
                line = await asyncio.wait_for(proc.stdout.readline(), 20)
                if b"Uvicorn running on" in line or b"gateway_serving" in line:  # --http asgi, --http fast
                    break
                assert line, "the gateway exited before serving"
                lines.append(line)
            assert any(b"gateway_admin_locked" in x for x in lines)
            async with aiohttp.ClientSession() as http:
                async with http.post(f"http://127.0.0.1:{port}/chat/v1/chat/completions", json=CHAT) as r:
                    assert r.status == 200  # the data plane serves
                for auth in ("Bearer dev-token", "Bearer ", ""):
                    headers = {"Authorization": auth} if auth else {}
                    async with http.get(f"http://127.0.0.1:{port}/admin/services", headers=headers) as r:
                        assert r.status in {401, 403}, auth  # no token: 401; a wrong one: 403
                    route = f"http://127.0.0.1:{port}/admin/services/chat/route"
                    async with http.put(route, json={"pin": "tier_4_static"}, headers=headers) as r:
                        assert r.status in {401, 403}, auth  # refused before the body is read
        finally:
            proc.terminate()
            await proc.wait()
