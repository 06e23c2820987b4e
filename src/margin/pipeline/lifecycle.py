"""One request from its reservation to its ledger rows: reserve → call → settle and release → record,
owned by one object so that every endpoint ends its requests the same way, exactly once.

    async with pipeline.lifecycle(ctx) as life:      # every model-serving path runs inside one
        await life.reserve(request)                  # stage ②: the worst case, held
        result = await call(...)                     # stage ⑤ (or a cache hit)
        life.usage = usage_of(result)                # what the answer used
        return result                                # leaving the block ends the request

A JSON answer (chat, completions, embeddings, messages; from an upstream or from the cache) ends
when its `async with` block is left: "ok" with `life.usage`, or the error that left it (a client
error, an upstream error, a cancellation). A streamed answer hands its end over to its chunks with
`life.stream(...)`: the generator's `finally` ends the request, and `stream` starts the generator
before handing it out, so a stream that is closed before anyone read it (the client left while
the response was starting) still runs that `finally`. The API layer closes every stream it was
given whatever happens to the response (`margin.api.sse.EventStreamResponse`).

The end, in order, each step running even when the one before it raised:
1. cleanups the path registered (`on_end`: release coalesced cache followers of a failed call);
2. close attempts left open: the call stage ends every attempt it knows the fate of, but an error
   it does not know (an adapter bug: not a MarginError) leaves its attempt open; it ends here,
   failed with that error, so its deployment's in-flight count comes down and its row says so;
3. meter: price every attempt (a cache hit was metered by the cache: cost 0, its stored usage);
4. release: settle the reservation to the actual cost and tokens;
5. record: one `RequestRecord`, which becomes one ledger row per upstream attempt (or the hit's row).
A second `end` does nothing, so a request that ends on two paths (a stream that fails and is then
closed) is settled and recorded once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType

from margin.pipeline.context import RequestContext
from margin.pipeline.limits import Limits
from margin.pipeline.meter import Meter
from margin.pipeline.record import Recorder, RequestRecord
from margin.types import Attempt, ChatRequest, Chunk, Cost, EmbeddingRequest, Usage

Cleanup = Callable[[], Awaitable[None]]
EndAttempt = Callable[[RequestContext, Attempt], None]  # the call stage's bookkeeping of an ended attempt


def status_of(error: BaseException | None) -> str:
    """How a request ended, as the ledger and metrics name it."""
    if error is None:
        return "ok"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "cancelled"  # the client went away (or the server is shutting down)
    return type(error).__name__


class RequestLifecycle:
    def __init__(
        self, ctx: RequestContext, *, meter: Meter, limits: Limits, recorder: Recorder, end_attempt: EndAttempt
    ) -> None:
        self.ctx = ctx
        self.meter, self.limits, self.recorder = meter, limits, recorder
        self.end_attempt = end_attempt
        self.usage: Usage | None = None  # what the answer used; set by the path before it returns
        # What the request would have cost all-premium, when the path knows better than the meter
        # (a cascade's verifier call: all-premium traffic would make none).
        self.counterfactual: Cost | None = None
        self._cleanups: list[Cleanup] = []
        self._handed_off = False
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    async def __aenter__(self) -> RequestLifecycle:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is not None:
            await self.end(status_of(error), None)  # never swallowed: the error goes on to the client
        elif not self._handed_off:
            await self.end("ok", self.usage)

    async def reserve(self, request: ChatRequest | EmbeddingRequest) -> None:
        """Stage ②: hold the request's worst case on every limit that applies (or refuse it)."""
        await self.limits.admit(self.ctx, request)

    def on_end(self, cleanup: Cleanup) -> None:
        """Run `cleanup` when the request ends, first, however it ends (it must be idempotent)."""
        self._cleanups.append(cleanup)

    async def stream(self, chunks: AsyncGenerator[Chunk, None]) -> ResponseStream:
        """Hand the end over to `chunks`, whose `finally` must call `end`, and start it (see above)."""
        self._handed_off = True
        return await ResponseStream.started(chunks)

    async def end(self, status: str, usage: Usage | None) -> None:
        """Clean up, meter, release and record, once; later calls do nothing."""
        if self._ended:
            return
        self._ended = True
        try:
            for cleanup in reversed(self._cleanups):
                await cleanup()
        finally:
            try:
                self._close_open_attempts(status)
                self._meter(usage)
            finally:
                try:
                    self.limits.settle(self.ctx)
                finally:
                    self._record(status, self.ctx.usage)

    def _close_open_attempts(self, status: str) -> None:
        for attempt in self.ctx.attempts:
            if attempt.latency_ms == 0.0:  # set when an attempt ends: this one never did
                attempt.status, attempt.error_class = "error", status
                self.end_attempt(self.ctx, attempt)

    def _meter(self, usage: Usage | None) -> None:
        if self.ctx.cache_row is not None:
            return  # a cache hit: metered by the cache (cost 0, the stored answer's usage)
        self.meter.settle(self.ctx, usage)
        if self.counterfactual is not None:
            self.ctx.counterfactual = self.counterfactual

    def _record(self, status: str, usage: Usage | None) -> None:
        ctx = self.ctx
        now = time.perf_counter()
        ttft = ctx.attempts[-1].ttft_ms if ctx.attempts else None
        self.recorder.submit(
            RequestRecord(
                ctx=ctx,
                status=status,
                usage=usage,
                latency_s=now - ctx.started,
                ttft_s=ttft / 1000 if ttft is not None else None,
                overhead_s=ctx.overhead_ms() / 1000,
            )
        )


class ResponseStream:
    """The chunks of a streamed answer, already started: its generator sits inside its `try` at the
    first chunk, so closing this stream (`aclose`) runs the generator's `finally` even when nobody
    read a chunk. The first chunk is kept and handed out first."""

    def __init__(self, first: Chunk | None, rest: AsyncGenerator[Chunk, None]) -> None:
        self._first = first
        self._rest = rest

    @classmethod
    async def started(cls, chunks: AsyncGenerator[Chunk, None]) -> ResponseStream:
        return cls(await anext(chunks, None), chunks)

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> Chunk:
        first, self._first = self._first, None
        if first is not None:
            return first
        return await anext(self._rest)

    async def aclose(self) -> None:
        """Stop the stream (the client went away, or the response is done); idempotent."""
        self._first = None
        await self._rest.aclose()
