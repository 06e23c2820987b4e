"""THE request path. Each public method reads top to bottom: auth, route, limits, cache, call,
meter, record. (The cache key needs the model group, so routing resolves the group first; the
deployment order it computes is only used on a cache miss.)

Every method runs inside one `RequestLifecycle` (margin.pipeline.lifecycle), which owns the end of
the request: meter, settle and release the reservation, record; exactly once, whichever way it ends.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator

from margin import errors
from margin.pipeline.auth import Authenticator
from margin.pipeline.cache import CacheHit, CacheMiss, CacheStage
from margin.pipeline.call import Caller
from margin.pipeline.call_stream import CallStream
from margin.pipeline.cascade import TierCaller
from margin.pipeline.context import RequestContext
from margin.pipeline.lifecycle import RequestLifecycle, ResponseStream, status_of
from margin.pipeline.limits import Limits
from margin.pipeline.meter import Meter, StreamMeter
from margin.pipeline.record import Recorder
from margin.pipeline.route import ModelTable, Router, route
from margin.types import ChatRequest, ChatResult, Chunk, EmbeddingRequest, EmbeddingResult, RouteDecision, Usage


class Pipeline:
    def __init__(
        self,
        table: ModelTable,
        auth: Authenticator,
        caller: Caller,
        meter: Meter,
        recorder: Recorder,
        limits: Limits | None = None,
        cache: CacheStage | None = None,
        router: Router | None = None,
    ) -> None:
        self.cache = cache
        self.router = router or Router(table)  # stage ④: tier policies of tiered groups
        self.limits = limits or Limits()  # stage ②: reserve before the call, settle where the request ends
        self.table = table
        self.auth = auth
        self.caller = caller
        self.meter = meter
        self.recorder = recorder
        self.tiers = TierCaller(self.router, caller, meter, self.lifecycle)  # stage ⑤ with cascades

    def lifecycle(self, ctx: RequestContext) -> RequestLifecycle:
        return RequestLifecycle(
            ctx, meter=self.meter, limits=self.limits, recorder=self.recorder, end_attempt=self.caller.end
        )

    async def authenticate(self, ctx: RequestContext) -> None:
        """Stage ① from the request's headers alone, before its body is read, so that a caller
        without a valid key costs no parsing. A refusal ends the request as any other (recorded once)."""
        try:
            await self._authenticated(ctx)
        except BaseException as error:  # any refusal or cancellation ends the request once, recorded; re-raised
            await self.lifecycle(ctx).end(status_of(error), None)
            raise

    async def _authenticated(self, ctx: RequestContext) -> None:
        if not ctx.authenticated:
            ctx.principal = await self.auth.authenticate(ctx)
            ctx.authenticated = True

    async def chat(self, ctx: RequestContext, request: ChatRequest) -> ChatResult:
        async with self.lifecycle(ctx) as life:
            lookup = await self._admit(life, request)
            if isinstance(lookup, CacheHit):
                return self._served_from_cache(ctx, lookup)
            result = await self.tiers.chat(ctx, request)
            life.usage = self.meter.usage_of(ctx, request, result.usage, result.body)
            if isinstance(lookup, CacheMiss) and self.cache is not None:
                await self.cache.store(lookup, ctx, result, life.usage)
            if self.router.rollouts is not None:
                self.router.rollouts.answered(ctx, request, result)  # queues shadow/grading work only
            return result

    async def stream(self, ctx: RequestContext, request: ChatRequest) -> ResponseStream:
        """Returns once the first chunk is in hand (so the caller can still send an error status)."""
        async with self.lifecycle(ctx) as life:
            lookup = await self._admit(life, request)
            if isinstance(lookup, CacheHit):
                return await life.stream(self._replayed(life, request, lookup))
            first, rest = await self.tiers.open_stream(ctx, request)
            return await life.stream(self._metered(life, request, first, rest, lookup))

    async def embed(self, ctx: RequestContext, request: EmbeddingRequest) -> EmbeddingResult:
        async with self.lifecycle(ctx) as life:
            await self._authenticated(ctx)
            ctx.decision = route(self.table, request.model, ctx.principal)
            await self.meter.count_ahead(ctx, request, route_deployments(ctx.decision))
            await life.reserve(request)
            result = await self.caller.embed(ctx, request)
            life.usage = result.usage
            return result

    # --- stages ① to ③ ----------------------------------------------------------------------------

    async def _admit(self, life: RequestLifecycle, request: ChatRequest) -> CacheHit | CacheMiss | None:
        """Who asks, which model group, within which limits, and whether the cache answers."""
        ctx = life.ctx
        await self._authenticated(ctx)
        ctx.decision = self.router.decide(ctx, request)
        await self.meter.count_ahead(ctx, request, route_deployments(ctx.decision))
        await life.reserve(request)
        if self.cache is None:
            return None
        found = await self.cache.lookup(ctx, request, control=ctx.cache_control)
        if isinstance(found, CacheMiss):
            # A call that fails releases the followers coalesced on it (they go upstream themselves);
            # after a kept answer this does nothing.
            life.on_end(functools.partial(self.cache.abandon, found))
        return found

    def _served_from_cache(self, ctx: RequestContext, hit: CacheHit) -> ChatResult:
        assert self.cache is not None
        result = self.cache.answer(hit)
        ctx.cache_row = self.cache.account(ctx, hit)  # the request's one ledger row: cost 0, saved cost
        return result

    # --- streams: each generator's `finally` ends the request ---------------------------------------

    async def _replayed(
        self, life: RequestLifecycle, request: ChatRequest, hit: CacheHit
    ) -> AsyncGenerator[Chunk, None]:
        assert self.cache is not None
        status = "ok"
        try:
            async for chunk in self.cache.replay(hit, request):
                yield chunk
        except BaseException as error:  # whatever ended the replay names its end (the client leaving too)
            status = status_of(error)
            raise
        finally:
            try:
                life.ctx.cache_row = self.cache.account(life.ctx, hit)
            finally:
                await life.end(status, life.ctx.usage)

    async def _metered(
        self,
        life: RequestLifecycle,
        request: ChatRequest,
        first: Chunk,
        rest: CallStream,
        lookup: CacheHit | CacheMiss | None,
    ) -> AsyncGenerator[Chunk, None]:
        ctx = life.ctx
        meters = AttemptMeters(self.meter, ctx, rest)
        status = "ok"
        chunks = _achain(first, rest)
        if isinstance(lookup, CacheMiss) and self.cache is not None:
            chunks = self.cache.capture(lookup, ctx, chunks)  # shared live with coalesced followers
        try:
            async for chunk in chunks:
                out = meters.observe(chunk, rest)
                if out is not None:
                    yield out
            tail = meters.current.usage_chunk()
            if tail is not None:
                yield tail
            if self.router.rollouts is not None:
                # the whole answer, joined once now if used: queues sample/shadow/grading/judge work only
                self.router.rollouts.streamed(ctx, request, meters.current, switched=rest.switched)
        except BaseException as error:  # whatever ended the stream names its end (the client leaving too)
            status = status_of(error)
            if self.router.rollouts is not None:
                self.router.rollouts.stream_cut(ctx, status)  # a cut answer is neither sampled nor graded: counted
            raise
        finally:
            if status == "cancelled" and self.caller.drains:
                self.caller.spawn(self._drain(life, rest, meters), name=f"drain-{ctx.request_id}")
            else:
                await self._end_stream(life, rest, meters, status)

    async def _drain(self, life: RequestLifecycle, rest: CallStream, meters: AttemptMeters) -> None:
        """The client left: read the answer to its end anyway, so what the upstream bills is metered."""
        try:
            with contextlib.suppress(errors.MarginError):  # it broke after all: what arrived is metered
                async for chunk in rest:
                    meters.observe(chunk, rest)
        finally:
            await self._end_stream(life, rest, meters, "cancelled")

    async def _end_stream(self, life: RequestLifecycle, rest: CallStream, meters: AttemptMeters, status: str) -> None:
        try:
            await rest.close("ok" if status == "ok" else "cancelled" if status == "cancelled" else "error")
        finally:
            await life.end(status, meters.final_usage())


def route_deployments(decision: RouteDecision) -> list[str]:
    """Every deployment the request may reach: the route and each cascade step up."""
    return [*decision.deployments, *(name for step in decision.escalation for name in step.deployments)]


async def _achain(first: Chunk, rest: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    yield first
    async for chunk in rest:
        yield chunk


class AttemptMeters:
    """One `StreamMeter` per upstream attempt of a stream. The call stage bills a broken attempt for
    what it generated; the attempt that took over is metered from its own chunks only."""

    def __init__(self, meter: Meter, ctx: RequestContext, rest: CallStream) -> None:
        self.meter, self.ctx = meter, ctx
        self.index = rest.source
        self.current = self._new(rest.request)

    def _new(self, request: ChatRequest) -> StreamMeter:
        count = self.meter.estimator(self.ctx)
        return StreamMeter(request, estimate=count, prompt_tokens=self.meter.prompt_for(self.ctx, request))

    def observe(self, chunk: Chunk, rest: CallStream) -> Chunk | None:
        if self.index != rest.source:  # a fallback took over
            self.index = rest.source
            self.current = self._new(rest.request)
        return self.current.observe(chunk)

    def final_usage(self) -> Usage | None:
        """The last attempt's usage, or None when it sent nothing (it failed before its first chunk).
        A stream that broke was billed by the call stage, which also saw what the upstream reported
        with its failure: that figure stands."""
        last = self.ctx.attempts[-1] if self.ctx.attempts else None
        if last is not None and last.status == "error" and last.usage is not None:
            return last.usage
        return self.current.final_usage() if self.index == len(self.ctx.attempts) - 1 else None
