"""The HTTP protocol `margin serve` runs: coalesced writes, plus limits on client connections.

uvicorn closes a keep-alive connection that stays idle after a response, but nothing bounds a
connection that never finishes its request headers (a slowloris client): it holds a file
descriptor forever, and enough of them exhaust the process. Here each connection must finish its
headers within `header_timeout_s` of opening (or, on a kept-alive connection, of its next
request's first byte); idle keep-alive connections close after `idle_timeout_s`; and past
`max_connections` open connections a new one is answered 503 at once and closed. The limits and
the counters come from the app (`margin.api.connections`), through the lifespan state.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import orjson

from margin.api.connections import CONNECTIONS_STATE_KEY, ConnectionGuard, ConnectionLimits
from margin.errors import MarginError, RequestTimeout, ServiceUnavailable
from margin.server.coalescing import CoalescingHttpToolsProtocol

# How long a rejected connection may stay open to read what its client sends before closing: a
# close with unread bytes would be a TCP reset, and the client might lose the 503 before reading it.
REJECT_LINGER_S = 1.0


def error_response(error: MarginError, extra: dict[str, str] | None = None) -> bytes:
    """A complete `Connection: close` response carrying the error's OpenAI envelope: for answers
    given before (or instead of) the app, where the app's error handler cannot run."""
    body = orjson.dumps(error.to_openai())
    head = [f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}"]
    headers = {"content-type": "application/json", "content-length": str(len(body)), "connection": "close"}
    head += [f"{name}: {value}" for name, value in {**headers, **(extra or {})}.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def too_many_connections(limit: int) -> bytes:
    error = ServiceUnavailable(
        f"The gateway has its maximum of {limit} open connections (server.max_connections); retry shortly.",
        code="too_many_connections",
    )
    return error_response(error, {"retry-after": "1"})


HEADERS_TOO_SLOW = error_response(
    RequestTimeout("The request's headers did not arrive in time (server.header_timeout_s).")
)


class GuardedHttpProtocol(CoalescingHttpToolsProtocol):
    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        guard = app_state.get(CONNECTIONS_STATE_KEY)
        # Another app (no margin lifespan state) still gets the default limits, uncounted.
        self.guard = guard if isinstance(guard, ConnectionGuard) else ConnectionGuard(ConnectionLimits())
        # uvicorn types this int, but only hands it to loop.call_later: fractions of a second work.
        self.timeout_keep_alive = self.guard.limits.idle_timeout_s  # type: ignore[assignment]
        self._header_timer: asyncio.TimerHandle | None = None
        self._in_headers = False  # between a request's first byte and the end of its headers
        self._rejected = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        counts, limits = self.guard.counts, self.guard.limits
        counts.opened_total += 1
        # uvicorn's own set of open connections: a connection handed to another protocol (an
        # upgrade) leaves it, so the count can never drift from what is really open.
        counts.open = len(self.connections)
        if counts.open > limits.max_connections:
            self._reject(limits.max_connections)
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)
        self.guard.counts.open = len(self.connections)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return  # read and dropped, so the close that follows is a clean FIN
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        if self._header_timer is None:  # a kept-alive connection's next request: its own deadline
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._cancel_header_timer()
        super().on_headers_complete()

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self.guard.counts.idle_closed_total += 1
        super().timeout_keep_alive_handler()

    def _reject(self, limit: int) -> None:
        self._rejected = True
        self.guard.counts.rejected_total += 1
        self.transport.write(too_many_connections(limit))
        if self.transport.can_write_eof():  # TLS cannot half-close: then the linger's close ends it
            self.transport.write_eof()  # the client reads the 503, then end of stream
        linger = min(REJECT_LINGER_S, self.guard.limits.header_timeout_s)
        self._header_timer = self.loop.call_later(linger, self.transport.close)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.guard.limits.header_timeout_s, self._headers_overdue)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A response is still going out: a pipelined request's headers are what is late, and
            # the response in progress has its own limits; look again later.
            self._arm_header_timer()
            return
        self.guard.counts.header_timeouts_total += 1
        if self._in_headers:  # part of a request came: say why it ends (a silent one just closes)
            self.transport.write(HEADERS_TOO_SLOW)
        self.transport.close()
