"""An HTTP protocol that coalesces socket writes made in one event-loop iteration.

uvicorn writes response headers and body in separate `transport.write` calls, and a streamed
answer makes one call per event. Each is a syscall; on small VMs a syscall costs tens of
microseconds, as much as the rest of the gateway's work on a request. Deferring writes to the end
of the current loop iteration sends headers + body (or several ready SSE events) in one syscall,
adding no latency: the flush runs before the loop waits for I/O again, and a response head goes
out with the first body bytes immediately.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from margin.api.disconnect import DISCONNECT_WATCH
from margin.api.timing import RECEIVED


class CoalescingTransport:
    __slots__ = ("_buffer", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        head_waiting = bool(self._buffer) and self._buffer[0][:5] == b"HTTP/"
        self._buffer.append(bytes(data))
        if head_waiting:
            # Status line + headers and the first body bytes go out together, at once: coalescing
            # further would delay the time to first byte of a stream.
            self.flush()
        elif not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._scheduled = False
        if self._buffer:
            data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
            self._buffer.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._buffer.clear()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    _on_lost: Callable[[], None] | None = None  # a streaming response's (margin.api.disconnect)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        callback, self._on_lost = self._on_lost, None
        if callback is not None:
            callback()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # The request's first byte, as the server parses it: the gateway's overhead counts from here,
        # so the wait before the app's task runs (event-loop queueing under load) is in it too.
        scope: dict[str, Any] = self.scope  # type: ignore[assignment]
        scope[RECEIVED] = (time.perf_counter(), time.time())
        scope[DISCONNECT_WATCH] = self.watch_disconnect

    def watch_disconnect(self, callback: Callable[[], None] | None) -> bool:
        """Call `callback` once when the connection is lost (None: stop watching); True, and no
        watching, when it is lost already."""
        if callback is not None and self.cycle is not None and self.cycle.disconnected:
            return True
        if callback is not None:
            # uvicorn pauses reading past 64 KiB of unread body, and resumes only in `receive()`,
            # which nobody calls while a stream waits: a hang-up (its EOF) is only seen by reading.
            self.flow.resume_reading()
        self._on_lost = callback
        return False
