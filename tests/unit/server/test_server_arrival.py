"""`margin serve`'s HTTP protocol stamps a request's arrival at its first byte, before the app runs."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import uvicorn

from margin.api.timing import RECEIVED
from margin.server.coalescing import CoalescingHttpToolsProtocol


async def test_the_stamp_is_the_first_bytes_arrival_not_the_apps_start() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen["received"], seen["called"] = scope.get(RECEIVED), time.perf_counter()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=CoalescingHttpToolsProtocol, lifespan="off", log_level="error"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\n")  # the first bytes...
        await writer.drain()
        sent_first = time.perf_counter()
        await asyncio.sleep(0.05)
        writer.write(b"Host: margin\r\n\r\n")  # ...and, 50 ms later, the end of the headers
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 204")
        writer.close()
    finally:
        server.should_exit = True
        await serving
    received, _ = seen["received"]
    assert received < sent_first + 0.05 <= seen["called"]  # stamped before the rest of the request came
