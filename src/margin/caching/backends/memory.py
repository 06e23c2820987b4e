"""The in-process backend: an LRU dict bounded by entry count and bytes, with absolute expiry.

Everything runs on the event loop (no awaits inside), so each call is atomic with respect to the
others; the async signatures only honour the protocol.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from margin.caching.entry import CacheEntry, CacheStats, Invalidation, VectorChanges, VectorRecord


class MemoryCacheBackend:
    def __init__(
        self, *, max_entries: int = 100_000, max_bytes: int = 512 * 1024 * 1024, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()  # least recently used first
        self._partitions: dict[str, set[str]] = {}
        self._bytes = 0

    async def get(self, key: str) -> CacheEntry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, entry: CacheEntry) -> list[str]:
        if entry.key in self._entries:
            self._drop(entry.key)
        self._entries[entry.key] = entry
        self._bytes += entry.size
        if entry.vector is not None:
            self._partitions.setdefault(entry.vector.partition, set()).add(entry.key)
        return self._evict()

    async def delete(self, keys: Sequence[str]) -> int:
        return sum(self._drop(key) for key in keys)

    async def invalidate(self, selector: Invalidation) -> list[str]:
        doomed = [key for key, entry in self._entries.items() if selector.matches(entry)]
        for key in doomed:
            self._drop(key)
        return doomed

    async def vectors(self, partition: str) -> list[VectorRecord]:
        now = self._clock()
        records = []
        for key in sorted(self._partitions.get(partition, ())):
            entry = self._entries[key]
            if entry.vector is not None and entry.expires_at > now:
                records.append(entry.vector)
        return records

    async def vector_changes(self, partition: str, cursor: str | None) -> VectorChanges:
        return VectorChanges([], cursor or "")  # only this process writes here

    async def stats(self) -> CacheStats:
        by_model: dict[str, int] = {}
        for entry in self._entries.values():
            by_model[entry.model] = by_model.get(entry.model, 0) + 1
        vectors = sum(len(keys) for keys in self._partitions.values())
        return CacheStats(entries=len(self._entries), bytes=self._bytes, vectors=vectors, by_model=by_model)

    async def close(self) -> None:
        self._entries.clear()
        self._partitions.clear()
        self._bytes = 0

    def _drop(self, key: str) -> bool:
        entry = self._entries.pop(key, None)
        if entry is None:
            return False
        self._bytes -= entry.size
        if entry.vector is not None:
            members = self._partitions.get(entry.vector.partition)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._partitions[entry.vector.partition]
        return True

    def _evict(self) -> list[str]:
        evicted = []
        while self._entries and (len(self._entries) > self.max_entries or self._bytes > self.max_bytes):
            key = next(iter(self._entries))
            self._drop(key)
            evicted.append(key)
        return evicted
