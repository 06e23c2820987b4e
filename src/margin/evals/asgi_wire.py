"""In-process wire: eval calls go straight into margin's ASGI app, no socket, no server.

The caller (the CLI, the composition root's side) builds the app and hands it over; this module only
speaks the ASGI protocol (plain dicts), so evals never import the web layer. `start` runs the app's
lifespan start-up (stores, writers, providers), `aclose` its shut-down (the ledger flushed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[MutableMapping[str, Any], Receive, Send], Coroutine[Any, Any, None]]


class AsgiResponse:
    def __init__(self, start: Message, messages: asyncio.Queue[Message], task: asyncio.Task[None]) -> None:
        self.status = int(start["status"])
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start.get("headers", [])}
        self._messages = messages
        self._task = task

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            message = await _next_message(self._messages, self._task)
            if message is None:
                raise ConnectionError("the app ended the response before its last byte")
            if message.get("type") != "http.response.body":
                continue
            chunk = message.get("body", b"")
            if chunk:
                yield bytes(chunk)
            if not message.get("more_body", False):
                return


async def _next_message(messages: asyncio.Queue[Message], task: asyncio.Task[None]) -> Message | None:
    """The app's next message, or None when the app finished (or failed) without sending one."""
    if not messages.empty():
        return messages.get_nowait()
    getter = asyncio.ensure_future(messages.get())
    await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    return messages.get_nowait() if not messages.empty() else None


class AsgiWire:
    def __init__(self, app: AsgiApp) -> None:
        self.app = app
        self._state: dict[str, Any] = {}
        self._lifespan: tuple[asyncio.Queue[Message], asyncio.Queue[Message], asyncio.Task[None]] | None = None

    async def start(self) -> None:
        inbox: asyncio.Queue[Message] = asyncio.Queue()
        outbox: asyncio.Queue[Message] = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self._state}
        task = asyncio.create_task(self.app(scope, inbox.get, outbox.put))
        self._lifespan = (inbox, outbox, task)
        await inbox.put({"type": "lifespan.startup"})
        reply = await _next_message(outbox, task)
        if reply is None or reply["type"] != "lifespan.startup.complete":
            raise ConnectionError(f"margin did not start: {(reply or {}).get('message', 'no reply')}")

    async def aclose(self) -> None:
        if self._lifespan is None:
            return
        inbox, outbox, task = self._lifespan
        self._lifespan = None
        await inbox.put({"type": "lifespan.shutdown"})
        await _next_message(outbox, task)
        await task

    @asynccontextmanager
    async def request(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> AsyncIterator[AsgiResponse]:
        finished = asyncio.Event()
        sent_body = False

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body or b"", "more_body": False}
            await finished.wait()  # the client "hangs up" once it has read what it wanted
            return {"type": "http.disconnect"}

        messages: asyncio.Queue[Message] = asyncio.Queue()
        task = asyncio.create_task(self.app(self._scope(method, path, headers), receive, messages.put))
        try:
            start = await _next_message(messages, task)
            if start is None or start.get("type") != "http.response.start":
                error = task.exception() if task.done() and not task.cancelled() else None
                raise ConnectionError(f"margin sent no response: {error!r}")
            yield AsgiResponse(start, messages, task)
        finally:
            finished.set()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: Starlette re-raises after sending its 500, already answered

    def _scope(self, method: str, path: str, headers: Mapping[str, str]) -> dict[str, Any]:
        raw_headers = [(b"host", b"margin.in-process")]
        raw_headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 0),
            "server": ("margin.in-process", 80),
            "state": dict(self._state),
        }
