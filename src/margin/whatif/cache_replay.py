"""The cache lever: recorded traffic replayed in time order through margin's exact-cache key and
its semantic engine (tenant partitions included), with the configured TTL.

A request is an exact hit when an unexpired entry with its exact key (margin's `exact_key`: model,
every message, every shaping parameter, tenant) exists; otherwise a semantic hit when
`SemanticEngine.find` accepts a cached question of its partition at the configured threshold and
guard; otherwise a miss, which stores an entry (as the cache stage does after the upstream answers).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from margin.caching.backends.memory import MemoryCacheBackend
from margin.caching.keys import exact_key, is_deterministic, last_user_text, semantic_partition
from margin.caching.semantic.batcher import MicroBatcher
from margin.caching.semantic.engine import SemanticEngine, SemanticPolicy
from margin.embedding import Matrix
from margin.embedding.protocol import Embedder
from margin.whatif.config import CacheConfig
from margin.whatif.traffic import Record

Outcome = Literal["exact", "semantic", "miss", "ineligible"]
_EMBED_BATCH = 256


@dataclass
class CacheReplay:
    outcomes: list[Outcome] = field(default_factory=list)  # aligned with the records

    def count(self, kind: Outcome) -> int:
        return sum(1 for o in self.outcomes if o == kind)


def replay_cache(records: Sequence[Record], config: CacheConfig, embedder: Embedder | None = None) -> CacheReplay:
    if config.semantic.enabled:
        return asyncio.run(_replay(records, config, embedder or _embedder(config.semantic.embedder)))
    return asyncio.run(_replay(records, config, None))


def _embedder(kind: str) -> Embedder:
    if kind == "minilm":
        from margin.embedding.minilm import MiniLMEmbedder

        return MiniLMEmbedder()
    from margin.embedding.hashing import HashingEmbedder

    return HashingEmbedder()


class _Semantic:
    """The semantic engine fed in replay time: entries added at the miss, forgotten at their expiry."""

    def __init__(self, records: Sequence[Record], config: CacheConfig, embedder: Embedder) -> None:
        self.engine = SemanticEngine(
            MemoryCacheBackend(), MicroBatcher(embedder, window_s=0), ann_above=5_000, monotonic=lambda: 0.0
        )
        self.policy = SemanticPolicy(threshold=config.semantic.threshold, guard=config.semantic.guard)
        self.ttl = config.exact.ttl_s
        self.expiries: list[tuple[float, str]] = []
        self.vectors = _embed_unique(records, embedder)

    async def find(self, record: Record, text: str, partition: str) -> bool:
        while self.expiries and self.expiries[0][0] <= record.timestamp:
            self.engine.forget([heapq.heappop(self.expiries)[1]])
        return await self.engine.find(partition, text, self.vectors[text], self.policy) is not None

    async def add(self, record: Record, text: str, partition: str) -> None:
        key = f"r{record.line}"
        await self.engine.add(partition, key, text, self.vectors[text])
        heapq.heappush(self.expiries, (record.timestamp + self.ttl, key))


def _embed_unique(records: Sequence[Record], embedder: Embedder) -> dict[str, Matrix]:
    texts = list(dict.fromkeys(t for r in records if (t := last_user_text(r.request)) is not None))
    vectors: dict[str, Matrix] = {}
    for start in range(0, len(texts), _EMBED_BATCH):
        chunk = texts[start : start + _EMBED_BATCH]
        for text, row in zip(chunk, embedder.embed(chunk), strict=True):
            vectors[text] = row
    return vectors


async def _replay(records: Sequence[Record], config: CacheConfig, embedder: Embedder | None) -> CacheReplay:
    semantic = _Semantic(records, config, embedder) if embedder is not None else None
    expires: dict[str, float] = {}
    replay = CacheReplay()
    for record in records:
        request = record.request
        if not record.body or (config.exact.deterministic_only and not is_deterministic(request.params)):
            replay.outcomes.append("ineligible")
            continue
        key = exact_key(request, tenant=record.tenant, model=request.model).value
        if config.exact.enabled and expires.get(key, float("-inf")) > record.timestamp:
            replay.outcomes.append("exact")
            continue
        replay.outcomes.append(await _semantic_step(semantic, record))
        if replay.outcomes[-1] == "miss":
            expires[key] = record.timestamp + config.exact.ttl_s
    if semantic is not None:
        await semantic.engine.close()
    return replay


async def _semantic_step(semantic: _Semantic | None, record: Record) -> Outcome:
    """After an exact miss: a semantic hit, or a miss that stores the question."""
    text = last_user_text(record.request) if semantic is not None else None
    if semantic is None or text is None:
        return "miss"
    partition = semantic_partition(record.request, tenant=record.tenant, model=record.request.model)
    if await semantic.find(record, text, partition):
        return "semantic"
    await semantic.add(record, text, partition)
    return "miss"
