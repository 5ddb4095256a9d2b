"""Bare proxies on the same upstream, to choose the gateway's hot-path client and server (`bench.gateway --hotpath`)."""

from __future__ import annotations

from bench.harness import PY, ROOT, STATE, Run, fmt_run, free_port, measure, process, wait_http

HOTPATH_VARIANTS = {
    "uvicorn + httpx.AsyncClient": "httpx",
    "uvicorn + aiohttp.ClientSession": "aiohttp",
    "uvicorn + gateway.client.Pool": "pool",
    "aiohttp.web + gateway.client.Pool": "web_pool",
}

HOTPATH_PROXY = r"""
import asyncio, sys
UP = sys.argv[2]
KIND = sys.argv[1]
PORT = int(sys.argv[3])
H = [(b"content-type", b"application/json"), (b"x-governor-tier", b"tier_0_primary")]

def make_forward():
    if KIND == "httpx":
        import httpx
        c = httpx.AsyncClient(base_url=UP, limits=httpx.Limits(max_connections=None, max_keepalive_connections=100))
        async def fwd(method, path, body):
            r = await c.request(method, path, content=body, headers={"content-type": "application/json"})
            return r.status_code, r.content
        return fwd
    if KIND == "aiohttp":
        import aiohttp
        s = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        async def fwd(method, path, body):
            async with s.request(method, UP + path, data=body, headers={"content-type": "application/json"}) as r:
                return r.status, await r.read()
        return fwd
    from gateway.client import Pool
    pool = Pool(UP)
    async def fwd(method, path, body):
        r = await pool.request(method, path, [(b"content-type", b"application/json")], body, pool.loop.time() + 5)
        return r.status, await r.read(pool.loop.time() + 5)
    return fwd

if KIND == "web_pool":
    import uvloop
    from aiohttp import web
    async def main():
        fwd = make_forward()
        async def handler(request):
            status, data = await fwd(request.method, request.path, await request.read())
            return web.Response(body=data, status=status, headers={"content-type": "application/json",
                                                                   "x-governor-tier": "tier_0_primary"})
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", PORT).start()
        await asyncio.Event().wait()
    uvloop.run(main())
else:
    import uvicorn
    fwd = None
    async def app(scope, receive, send):
        global fwd
        if scope["type"] != "http":
            m = await receive()
            await send({"type": m["type"] + ".complete"})
            return
        if fwd is None:
            fwd = make_forward()
        body = b""
        more = True
        while more:
            m = await receive()
            body += m.get("body", b"")
            more = m.get("more_body", False)
        status, data = await fwd(scope["method"], scope["path"], body)
        await send({"type": "http.response.start", "status": status, "headers": H})
        await send({"type": "http.response.body", "body": data})
    uvicorn.run(app, host="127.0.0.1", port=PORT, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, lifespan="off")
"""


def run_hotpath(upstream: str, duration: float) -> list[Run]:
    STATE.mkdir(parents=True, exist_ok=True)
    script = STATE / "hotpath_proxy.py"
    script.write_text(HOTPATH_PROXY)
    runs = []
    for label, kind in HOTPATH_VARIANTS.items():
        port = free_port()
        with process([PY, str(script), kind, upstream, str(port)], env={"PYTHONPATH": str(ROOT)}) as proc:
            wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
            for clients in (1, 20):
                runs.append(measure(label, f"http://127.0.0.1:{port}/v1/chat/completions", clients, duration))
                print(fmt_run(runs[-1]), flush=True)
    return runs
