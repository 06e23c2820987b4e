"""A small reverse proxy on loopback, standing in for nginx, Caddy or a sidecar on margin's host.

Like nginx with `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for`, it forwards each
request to `upstream` and appends the address of the client it saw to whatever X-Forwarded-For the
client sent (so a forged value stays on the left). Everything it sends margin comes from
127.0.0.1, which is the whole point: behind a proxy on the same host, every caller looks local.

A loopback-only test has no client on another machine, so `client_as` makes the proxy report the
client it would have seen there (e.g. 203.0.113.9) instead of its real peer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from tests.support.processes import free_port

# Headers that describe one connection, never forwarded by a proxy (RFC 9110, 7.6.1).
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)


@asynccontextmanager
async def reverse_proxy(upstream: str, *, client_as: str | None = None) -> AsyncIterator[str]:
    """Serve the proxy on a loopback port until the block ends; yields its base URL."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.Response:
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in HOP_BY_HOP | {"host", "content-length", "x-forwarded-for"}
        )
        seen = client_as or request.remote or "unknown"
        headers["X-Forwarded-For"] = ", ".join([*request.headers.getall("X-Forwarded-For", []), seen])
        headers["X-Forwarded-Proto"] = request.scheme
        body = await request.read()
        async with session.request(request.method, upstream + request.path_qs, headers=headers, data=body) as reply:
            payload = await reply.read()
            answer = CIMultiDict(
                (name, value)
                for name, value in reply.headers.items()
                if name.lower() not in HOP_BY_HOP | {"content-length"}
            )
            return web.Response(status=reply.status, body=payload, headers=answer)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await session.close()
