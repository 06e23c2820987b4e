"""Noticing that a streaming client left, without a task per stream.

A stream spends most of its life waiting for the upstream's next event, so a client that hangs up
must interrupt that wait: its reservation is settled and its rows recorded with what it got (the
stream's `aclose`), and the upstream call stops. Starlette's `StreamingResponse` starts an anyio
task group with a listener task per stream for this; on a loaded worker that is a measurable part
of a stream's cost (docs/performance.md).

`margin serve`'s HTTP protocol (`margin.server.coalescing`) puts a function in each request's
scope under `DISCONNECT_WATCH`: it registers a callback that the protocol calls when the
connection is lost (the same moment uvicorn's `receive()` would answer `http.disconnect`), and says
whether the connection is gone already. `ClientWatch` uses it to cancel the task that streams; under
another server (no such key) it falls back to one small listener task on `receive()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.types import Receive, Scope

DISCONNECT_WATCH = "margin.disconnect_watch"  # scope key: Callable[[Callable[[], None] | None], bool]
WatchFn = Callable[[Callable[[], None] | None], bool]


class ClientWatch:
    """Runs a response body until it is sent or the client leaves, whichever is first; `left` says
    which. A client that left is not an error: `run` returns normally, the body cancelled."""

    __slots__ = ("_done", "_listener", "_receive", "_scope", "_task", "_watch", "left")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.left = False
        self._scope = scope
        self._receive = receive
        self._done = False
        self._task: asyncio.Task[object] | None = None
        self._watch: WatchFn | None = None
        self._listener: asyncio.Task[None] | None = None

    async def run(self, body: Callable[[], Awaitable[None]]) -> None:
        task = self._task = asyncio.current_task()
        if task is None:  # not under asyncio's tasks: nothing to cancel, send it all
            await body()
            return
        if self._start():
            self.left = True  # gone before anything was sent: nothing to send
            return
        try:
            await body()
        except asyncio.CancelledError:
            if not self.left or task.uncancel() > 0:
                raise  # cancelled from outside (shutdown), not only by the client leaving
        else:
            if self.left:
                task.uncancel()  # the body ended by itself before our cancellation reached it
        finally:
            self._stop()

    def _start(self) -> bool:
        """Watch the connection; True when the client is gone already."""
        watch = self._scope.get(DISCONNECT_WATCH)
        if watch is not None:
            self._watch = watch
            return bool(watch(self._lost))
        self._listener = asyncio.ensure_future(self._listen())
        return False

    def _stop(self) -> None:
        self._done = True
        if self._watch is not None:
            self._watch(None)
        if self._listener is not None:
            self._listener.cancel()

    def _lost(self) -> None:
        if not self._done and not self.left and self._task is not None:
            self.left = True
            self._task.cancel()

    async def _listen(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._lost()
