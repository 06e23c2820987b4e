"""The gateway's overhead as a client sees it: from the request's arrival to the response's last byte.

`ResponseTiming` wraps the whole HTTP app. The request counts from its first byte: `margin serve`'s
HTTP protocol (`margin.server.coalescing`) stamps the scope when it starts parsing the request, so
the wait before the app's task gets the event loop is counted; under another server, from when the
app was called. The middleware then watches the response go out:

- right before the headers go out (the body already serialised), it adds `x-margin-overhead-ms`:
  the time so far minus what the upstreams spent. A header cannot wait for the body, so for a JSON
  answer this leaves out only the body write itself; for a stream it is the overhead until its
  headers go out with the first event in hand (what the rest of the stream costs is not known yet);
- once the last byte is handed to the server (or the client leaves), it marks the request context
  written, which releases the request's records: the Prometheus histogram
  `margin_overhead_seconds` and the ledger's `extra.overhead_ms` get the complete figure.

Neither figure sees the time before the server read the request's bytes (a busy event loop that has
not yet polled the socket), nor time the upstream's answer waited for the event loop before the
adapter read it (that is counted as the upstream's).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from margin.pipeline.context import RequestContext

RECEIVED = "margin.received"  # scope key: (perf_counter, epoch seconds) when the app was called
CONTEXT = "margin.context"  # scope key: the request's context, once the endpoint has made one
OVERHEAD_HEADER = b"x-margin-overhead-ms"


def attach(scope: Scope, ctx: RequestContext) -> None:
    """Time `ctx` from the request's arrival, and let `ResponseTiming` finish it. Without the
    middleware (an endpoint mounted bare) the context keeps its own start and is never held."""
    received = scope.get(RECEIVED)
    if received is None:
        return
    ctx.started, ctx.wall_started = received
    ctx.hold_until_written()
    scope[CONTEXT] = ctx


class ResponseTiming:
    """Pure ASGI middleware (no body buffering, streams pass through untouched)."""

    def __init__(self, app: ASGIApp, *, expose_header: bool = True) -> None:
        self.app = app
        self.expose_header = expose_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope.setdefault(RECEIVED, (time.perf_counter(), time.time()))  # margin's server stamped it earlier

        async def timed_send(message: Message) -> None:
            ctx: RequestContext | None = scope.get(CONTEXT)
            if ctx is not None and message["type"] == "http.response.start" and self.expose_header:
                message = with_overhead_header(message, ctx)
            await send(message)
            if ctx is not None and message["type"] == "http.response.body" and not message.get("more_body"):
                ctx.written(time.perf_counter())

        try:
            await self.app(scope, receive, timed_send)
        finally:
            ctx = scope.get(CONTEXT)
            if ctx is not None:
                ctx.written(time.perf_counter())  # no-op when the last byte went out; else the client left


def with_overhead_header(message: Message, ctx: RequestContext) -> Message:
    """The response start with the overhead so far, taken as late as a header can be."""
    headers = [(name, value) for name, value in message.get("headers", []) if name.lower() != OVERHEAD_HEADER]
    headers.append((OVERHEAD_HEADER, f"{ctx.overhead_ms():.3f}".encode()))
    return {**message, "headers": headers}
