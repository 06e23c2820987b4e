"""What the cache stores: an answer (opaque bytes to a backend) and, for the semantic cache, the
vector of the question it answered. Backends never parse payloads, which keeps them small and lets
a key-value store such as Redis hold them as plain strings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import orjson

from margin.embedding import Matrix
from margin.types import JSON, Usage


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """A complete answer in OpenAI's non-streamed shape, plus who produced it (for saved cost)."""

    body: JSON
    usage: Usage | None
    model: str
    deployment: str
    created_at: float

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "body": self.body,
                "usage": asdict(self.usage) if self.usage is not None else None,
                "model": self.model,
                "deployment": self.deployment,
                "created_at": self.created_at,
            }
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> CachedAnswer:
        raw: dict[str, Any] = orjson.loads(payload)
        usage = raw.get("usage")
        return cls(
            body=raw["body"],
            usage=_usage(usage) if isinstance(usage, dict) else None,
            model=str(raw["model"]),
            deployment=str(raw["deployment"]),
            created_at=float(raw["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class VectorRecord:
    """The semantic side of an entry: which partition it belongs to, the question's text (the guard
    compares texts) and its unit vector. Shares its key with the answer entry and dies with it."""

    key: str
    partition: str
    text: str
    vector: Matrix  # shape (dim,), float32, unit length

    def vector_bytes(self) -> bytes:
        return np.ascontiguousarray(self.vector, dtype=np.float32).tobytes()

    @staticmethod
    def vector_from(blob: bytes) -> Matrix:
        return np.frombuffer(blob, dtype=np.float32).copy()


@dataclass(frozen=True, slots=True)
class CacheEntry:
    key: str
    tenant: str
    model: str
    payload: bytes
    created_at: float
    expires_at: float
    tags: tuple[str, ...] = ()
    vector: VectorRecord | None = None

    @property
    def size(self) -> int:
        text = len(self.vector.text.encode()) + self.vector.vector.nbytes if self.vector else 0
        return len(self.payload) + text + len(self.key)


@dataclass(frozen=True, slots=True)
class Invalidation:
    """Which entries to drop. Fields combine with AND; an empty selector matches nothing (dropping
    everything needs `everything=True`, so a forgotten filter cannot wipe the cache)."""

    tenant: str | None = None
    model: str | None = None  # a model group: matches `group` and `group@deployments`
    tag: str | None = None
    key_prefix: str | None = None
    everything: bool = False

    @property
    def empty(self) -> bool:
        return not self.everything and not any((self.tenant, self.model, self.tag, self.key_prefix))

    def matches(self, entry: CacheEntry) -> bool:
        if self.empty:
            return False
        return (
            (self.tenant is None or entry.tenant == self.tenant)
            and (self.model is None or model_matches(entry.model, self.model))
            and (self.tag is None or self.tag in entry.tags)
            and (self.key_prefix is None or entry.key.startswith(self.key_prefix))
        )


def model_matches(stored: str, wanted: str) -> bool:
    return stored == wanted or stored.startswith(wanted + "@")


@dataclass(frozen=True, slots=True)
class CacheStats:
    entries: int
    bytes: int
    vectors: int
    by_model: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VectorChanges:
    """Vectors added to a partition by other writers since a cursor (a shared backend's replicas
    tail these to keep their in-process indexes current). `reset`: the backend no longer knows what
    came after the cursor, so the partition must be reloaded; `more`: ask again with `cursor`."""

    records: list[VectorRecord]
    cursor: str
    reset: bool = False
    more: bool = False


def _usage(stored: dict[str, Any]) -> Usage:
    """A stored usage; JSON turned its tuple of estimated buckets into a list (entries written before
    that field existed have none)."""
    return Usage(**{**stored, "estimated_buckets": tuple(stored.get("estimated_buckets") or ())})
