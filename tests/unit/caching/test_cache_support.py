"""Shared helpers for the cache tests: a scripted upstream, request and context builders, and
`serve`, a miniature request path wired exactly as pipeline/cache.py's docstring tells the lead."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from margin.caching.backend import CacheBackend
from margin.caching.backends.memory import MemoryCacheBackend
from margin.caching.backends.sqlite import SqliteCacheBackend
from margin.caching.semantic.batcher import MicroBatcher
from margin.caching.semantic.engine import SemanticEngine
from margin.caching.semantic.learned import FEATURES, LearnedDecision
from margin.config.model import CacheConfig, DeploymentConfig
from margin.embedding import Embedder, MiniLMEmbedder, minilm_available
from margin.metering.catalog import load_catalog
from margin.metering.pricebook import PriceBook
from margin.metering.unknown import UnknownPricePolicy
from margin.metering.usage import openai_usage
from margin.pipeline.cache import CacheHit, CacheStage
from margin.pipeline.context import RequestContext
from margin.providers.fake import engine
from margin.storage.ledger_row import LedgerRow
from margin.types import ChatRequest, ChatResult, Chunk, Principal, RouteDecision

DEPLOYMENT = DeploymentConfig(name="primary", provider="fake", model="big", price={"input": "1", "output": "2"})
HAS_MINILM = minilm_available()


@functools.cache
def minilm() -> Embedder:
    embedder = MiniLMEmbedder()
    embedder.load()
    return embedder


def prices() -> PriceBook:
    return PriceBook([DEPLOYMENT], load_catalog(user_file=Path("/nonexistent")), UnknownPricePolicy.ALERT)


def request(
    text: str,
    *,
    system: str | None = None,
    stream: bool = False,
    include_usage: bool = False,
    earlier: list[dict[str, Any]] | None = None,
    **params: Any,
) -> ChatRequest:
    messages = [{"role": "system", "content": system}] if system else []
    messages += earlier or []
    messages.append({"role": "user", "content": text})
    params.setdefault("temperature", 0)
    return ChatRequest(model="chat", messages=messages, params=params, stream=stream, include_usage=include_usage)


def context(principal: Principal | None = None, *, group: str = "chat", rid: str = "req-1") -> RequestContext:
    ctx = RequestContext(request_id=rid, endpoint="chat", principal=principal or Principal())
    ctx.decision = RouteDecision(model_group=group, deployments=("primary",))
    return ctx


@dataclass
class Upstream:
    """The fake model (echoes the last user turn), counting calls; optionally slow or failing."""

    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    fail: bool = False
    fail_after_chunks: int | None = None
    calls: int = 0

    async def chat(self, req: ChatRequest) -> ChatResult:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("upstream down")
        body = engine.chat_completion(req.messages, "big", engine.FakeBehaviour(), req.params)
        return ChatResult(body=body, usage=openai_usage(body["usage"]), model="big")

    async def stream(self, req: ChatRequest) -> AsyncIterator[Chunk]:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        params = {**req.params, "stream_options": {"include_usage": True}}
        for i, body in enumerate(engine.chat_chunks(req.messages, "big", engine.FakeBehaviour(), params)):
            if self.fail_after_chunks is not None and i >= self.fail_after_chunks:
                raise RuntimeError("upstream broke mid-stream")
            usage = body.get("usage")
            yield Chunk(body=body, usage=openai_usage(usage) if usage else None)
            await asyncio.sleep(self.chunk_delay_s)


@dataclass
class Served:
    kind: str  # exact | semantic | coalesced | miss | bypass
    body: dict[str, Any] | None = None
    chunks: list[Chunk] = field(default_factory=list)
    row: LedgerRow | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        if self.body is not None:
            return str(self.body["choices"][0]["message"]["content"])
        return "".join(
            str((c.body["choices"][0].get("delta") or {}).get("content") or "")
            for c in self.chunks
            if c.body.get("choices")
        )


async def serve(
    stage: CacheStage, ctx: RequestContext, req: ChatRequest, upstream: Upstream, *, control: str | None = None
) -> Served:
    """The request path of the wiring docstring: lookup, then hit (answer/replay + account) or
    miss (call, then store/capture, abandon on error)."""
    outcome = await stage.lookup(ctx, req, control=control)
    if isinstance(outcome, CacheHit):
        served = Served(kind=outcome.kind)
        if req.stream:
            served.chunks = [chunk async for chunk in stage.replay(outcome, req)]
        else:
            served.body = stage.answer(outcome).body
        served.row = stage.account(ctx, outcome)
        served.headers = dict(ctx.extra_headers)
        return served
    kind = "bypass" if outcome.key is None else "miss"
    if req.stream:
        ctx.deployment, ctx.model = "primary", "big"
        try:
            chunks = [c async for c in stage.capture(outcome, ctx, upstream.stream(req))]
        except RuntimeError:
            return Served(kind="error", headers=dict(ctx.extra_headers))
        return Served(kind=kind, chunks=chunks, headers=dict(ctx.extra_headers))
    try:
        result = await upstream.chat(req)
    except RuntimeError:
        await stage.abandon(outcome)
        return Served(kind="error", headers=dict(ctx.extra_headers))
    ctx.deployment, ctx.model = "primary", "big"
    await stage.store(outcome, ctx, result, result.usage)
    return Served(kind=kind, body=result.body, headers=dict(ctx.extra_headers))


def backend_for(kind: str, tmp_path: Path, **limits: Any) -> CacheBackend:
    if kind == "sqlite":
        return SqliteCacheBackend(tmp_path / "cache.db", **limits)
    return MemoryCacheBackend(**limits)


def stage_for(
    backend: CacheBackend, *, embedder: Embedder | None = None, ann_above: int = 20_000, **config: Any
) -> CacheStage:
    """A stage over `backend`; semantic caching is on when an embedder is given."""
    settings = CacheConfig(**config)
    semantic = None
    if embedder is not None:
        if "semantic" not in config:
            settings = settings.model_copy(update={"semantic": settings.semantic.model_copy(update={"enabled": True})})
        batcher = MicroBatcher(embedder, window_s=0.002, max_batch=32)
        semantic = SemanticEngine(backend, batcher, ann_above=ann_above)
    return CacheStage(settings, backend, semantic=semantic, prices=prices())


ZERO = Decimal(0)


def one_feature_decision(name: str) -> LearnedDecision:
    """p = sigmoid(10 * (feature - 0.5)) on raw values: a decision that reads one feature alone."""
    weights = np.zeros(len(FEATURES))
    weights[FEATURES.index(name)] = 10.0
    return LearnedDecision(weights, -5.0, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), floor=0.1)
