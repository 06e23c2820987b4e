"""Cache entries and a settable clock for the cache backend tests (contract suite and Redis replicas)."""

from __future__ import annotations

import numpy as np

from margin.caching.entry import CacheEntry, VectorRecord


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(
    key: str,
    *,
    tenant: str = "t1",
    model: str = "chat@a",
    ttl: float = 60,
    tags: tuple[str, ...] = (),
    payload: bytes = b"answer",
    partition: str | None = None,
    created: float = 1000.0,
) -> CacheEntry:
    """An entry; with `partition`, a unit vector (its axis depends on the key) for semantic lookups."""
    vector = None
    if partition is not None:
        v = np.zeros(4, dtype=np.float32)
        v[len(key) % 4] = 1.0
        vector = VectorRecord(key, partition, f"question {key}", v)
    return CacheEntry(
        key=key,
        tenant=tenant,
        model=model,
        payload=payload,
        created_at=created,
        expires_at=created + ttl,
        tags=tags,
        vector=vector,
    )
