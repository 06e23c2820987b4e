"""The one narrow contract every response-cache backend meets (in-process, SQLite, Redis).

Shaped for a key-value store: entries are looked up by key only; expiry is absolute; LRU order is
the backend's business (Redis: `maxmemory-policy allkeys-lru`); invalidation selects on a few
columns that the Redis backend keeps as secondary sets (tenant, model, tag) or a sorted set (key
prefix). Vectors live beside the answers and are read a partition at a time to build in-process
indexes; a backend shared by several processes also reports what the others added since.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from margin.caching.entry import CacheEntry, CacheStats, Invalidation, VectorChanges, VectorRecord


class CacheBackendError(Exception):
    """A backend failed (unreachable, corrupt, full). The cache stage treats it as a miss."""


@runtime_checkable
class CacheBackend(Protocol):
    async def get(self, key: str) -> CacheEntry | None:
        """The live entry under `key` (expired entries are never returned) and mark it recently used."""
        ...

    async def put(self, entry: CacheEntry) -> list[str]:
        """Insert or replace, with its vector if any; evict least-recently-used entries past the
        limits (and any expired entries it swept on the way) and return their keys."""
        ...

    async def delete(self, keys: Sequence[str]) -> int:
        """Drop entries (and their vectors); returns how many existed."""
        ...

    async def invalidate(self, selector: Invalidation) -> list[str]:
        """Drop matching entries; returns their keys (so in-process indexes can forget them)."""
        ...

    async def vectors(self, partition: str) -> list[VectorRecord]:
        """Every live vector of a semantic partition (to rebuild its index after a restart)."""
        ...

    async def vector_changes(self, partition: str, cursor: str | None) -> VectorChanges:
        """Vectors other processes added to `partition` after `cursor`; `cursor=None` returns just the
        current position. A backend private to one process has no other writers: no records."""
        ...

    async def stats(self) -> CacheStats: ...

    async def close(self) -> None: ...
