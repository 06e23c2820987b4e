"""The response cache as a library: exact keys, a calibrated and guarded semantic cache, request
coalescing, and the backends that hold answers. The request path uses it through
`margin.pipeline.cache.CacheStage`; nothing here imports the web layer or the pipeline.

Importing is cheap: the embedder and hnswlib load on first use.
"""

from __future__ import annotations

from margin.caching.accounting import CacheHit, hit_ledger_row, saved_cost
from margin.caching.backend import CacheBackend, CacheBackendError
from margin.caching.backends.memory import MemoryCacheBackend
from margin.caching.backends.sqlite import SqliteCacheBackend
from margin.caching.coalesce import Coalescer, Flight
from margin.caching.directives import CacheDirectives
from margin.caching.entry import CachedAnswer, CacheEntry, CacheStats, Invalidation, VectorChanges, VectorRecord
from margin.caching.keys import exact_key, semantic_partition, tenant_of

__all__ = [
    "CacheBackend",
    "CacheBackendError",
    "CacheDirectives",
    "CacheEntry",
    "CacheHit",
    "CacheStats",
    "CachedAnswer",
    "Coalescer",
    "Flight",
    "Invalidation",
    "MemoryCacheBackend",
    "SqliteCacheBackend",
    "VectorChanges",
    "VectorRecord",
    "exact_key",
    "hit_ledger_row",
    "saved_cost",
    "semantic_partition",
    "tenant_of",
]
