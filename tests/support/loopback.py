"""An app built by `create_app`, served by uvicorn inside the test's own event loop on a loopback
port: real HTTP for the SDKs (sockets, disconnects), while the test can still look inside the app
(its counters, its recorder, its ledger) through the objects it injected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp

from tests.support.processes import free_port


@asynccontextmanager
async def serving(app: ASGIApp, *, start_timeout_s: float = 30.0) -> AsyncIterator[str]:
    """Serve `app` (its lifespan included) until the block ends; yields the base URL. Leaving the
    block shuts the server down gracefully, so the app's shutdown (drains, flushes) has run."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", timeout_graceful_shutdown=10,
        proxy_headers=False,  # as `margin serve`: the peer is the client margin sees (api/client_address.py)
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name=f"uvicorn-{port}")
    async with asyncio.timeout(start_timeout_s):
        while not server.started:
            if task.done():
                task.result()  # raises what stopped the start-up
                raise RuntimeError("uvicorn exited before it started serving")
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
