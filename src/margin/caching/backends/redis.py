"""The response cache on Redis, shared by every replica (`cache.backend: redis`).

Every write and every hit is one Lua script (one round trip), so an entry, its invalidation indexes,
its LRU rank and the size totals change atomically whoever writes. Limits (`max_entries`,
`max_bytes`) are enforced by the gateway, not by Redis' own eviction, so the evicted keys are known
and in-process semantic indexes can forget them. Entries also carry a Redis TTL an hour past their
expiry: a safety net for a cache nobody writes to any more, not the expiry mechanism.

Replicas see each other's semantic entries through a per-partition stream of added keys, which each
replica's index tails (`vector_changes`). Calls that do not answer within `timeout_s` raise
CacheBackendError, which the cache stage treats as a miss.

Like every Redis user in margin it reaches the driver only through `margin.storage.redis.client`
(tests/test_architecture.py): this module never imports `redis` itself.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

import orjson

from margin.caching.backend import CacheBackendError
from margin.caching.backends.redis_scripts import CHANGES, DELETE, GET, INVALIDATE, PUT
from margin.caching.entry import CacheEntry, CacheStats, Invalidation, VectorChanges, VectorRecord
from margin.storage.redis.client import RedisClient, bounded, open_client

T = TypeVar("T")
SAFETY_TTL_S = 3600.0
_CHUNK = 500  # keys per pipelined read when loading a partition
_CHANGES_PER_CALL = 1000


class RedisCacheBackend:
    """CacheBackend on one Redis (not Redis Cluster: the scripts touch keys they compute)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "margin:",
        max_entries: int = 100_000,
        max_bytes: int = 512 * 1024 * 1024,
        timeout_s: float = 0.25,
        bulk_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.prefix = prefix + "cache:"
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.bulk_timeout_s = bulk_timeout_s
        self._clock = clock
        # A stream longer than the cache is never needed: a replica that far behind reloads instead.
        self._stream_len = max(1000, max_entries)
        self.client: RedisClient = open_client(url, timeout_s=timeout_s)
        self._put = self.client.register_script(PUT)
        self._get = self.client.register_script(GET)
        self._delete = self.client.register_script(DELETE)
        self._invalidate = self.client.register_script(INVALIDATE)
        self._changes = self.client.register_script(CHANGES)

    async def _bounded(self, call: Awaitable[T], timeout_s: float | None = None) -> T:
        return await bounded(call, timeout_s or self.timeout_s, CacheBackendError)

    async def get(self, key: str) -> CacheEntry | None:
        fields = await self._bounded(self._get(keys=[], args=[self.prefix, key, repr(self._clock())]))
        if fields is None:
            return None
        tenant, model, tags, created, expires, payload = fields
        return CacheEntry(
            key=key,
            tenant=tenant.decode(),
            model=model.decode(),
            payload=bytes(payload),
            created_at=float(created),
            expires_at=float(expires),
            tags=tuple(orjson.loads(tags)),
        )

    async def put(self, entry: CacheEntry) -> list[str]:
        now = self._clock()
        vector = entry.vector
        args: list[Any] = [
            self.prefix,
            entry.key,
            repr(now),
            repr(entry.expires_at),
            max(1000, int((entry.expires_at - now + SAFETY_TTL_S) * 1000)),
            self.max_entries,
            self.max_bytes,
            self._stream_len,
            entry.size,
            entry.tenant,
            entry.model,
            orjson.dumps(list(entry.tags)),
            repr(entry.created_at),
            entry.payload,
            orjson.dumps(index_sets(entry)),
            vector.partition if vector is not None else "",
            vector.text if vector is not None else "",
            vector.vector_bytes() if vector is not None else b"",
        ]
        dropped = await self._bounded(self._put(keys=[], args=args))
        return [key.decode() for key in dropped]

    async def delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        return int(await self._bounded(self._delete(keys=[], args=[self.prefix, *keys])))

    async def invalidate(self, selector: Invalidation) -> list[str]:
        if selector.empty:
            return []
        return await self._bounded(self._invalidate_in_chunks(selector), self.bulk_timeout_s)

    async def _invalidate_in_chunks(self, selector: Invalidation) -> list[str]:
        candidates = sorted(_text(key) for key in await self._candidates(selector))
        criteria = [selector.tenant or "", selector.model or "", selector.tag or "", selector.key_prefix or ""]
        dropped: list[str] = []
        for start in range(0, len(candidates), _CHUNK):
            chunk = candidates[start : start + _CHUNK]
            found = await self._invalidate(keys=[], args=[self.prefix, *criteria, *chunk])
            dropped.extend(key.decode() for key in found)
        return dropped

    async def _candidates(self, selector: Invalidation) -> Iterable[bytes | str]:
        """Keys that may match, from the narrowest selector (a superset: the script checks all)."""
        p = self.prefix
        if selector.tag:
            return await self.client.smembers(p + "g:" + selector.tag)
        if selector.model:
            return await self.client.smembers(p + "m:" + selector.model)
        if selector.tenant:
            return await self.client.smembers(p + "t:" + selector.tenant)
        if selector.key_prefix:
            low, high = b"[" + selector.key_prefix.encode(), b"[" + selector.key_prefix.encode() + b"\xff"
            keys: list[bytes | str] = await self.client.zrangebylex(p + "keys", low, high)
            return keys
        return await self.client.zrangebylex(p + "keys", b"-", b"+")  # everything

    async def vectors(self, partition: str) -> list[VectorRecord]:
        return await self._bounded(self._load_partition(partition), self.bulk_timeout_s)

    async def _load_partition(self, partition: str) -> list[VectorRecord]:
        """Read in pipelined chunks rather than one script: a 100k-entry partition in one script
        would stall every other replica's cache calls while Redis serialises it."""
        members = sorted(_text(key) for key in await self.client.smembers(self.prefix + "vp:" + partition))
        now = self._clock()
        records: list[VectorRecord] = []
        for start in range(0, len(members), _CHUNK):
            chunk = members[start : start + _CHUNK]
            async with self.client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.hmget(self.prefix + "v:" + key, "text", "vec", "expires")
                rows = await pipe.execute()
            for key, (text, vec, expires) in zip(chunk, rows, strict=True):
                if text is not None and float(expires) > now:
                    records.append(VectorRecord(key, partition, text.decode(), VectorRecord.vector_from(vec)))
        return records

    async def vector_changes(self, partition: str, cursor: str | None) -> VectorChanges:
        """Vectors other writers added to `partition` since `cursor` (None: just the current head)."""
        stream_id, sequence = cursor.split("/") if cursor else ("", "0")
        reply = await self._bounded(
            self._changes(keys=[], args=[self.prefix, partition, stream_id, sequence, _CHANGES_PER_CALL])
        )
        status, head, head_sequence = (part.decode() for part in reply[:3])
        now = self._clock()
        records = [
            VectorRecord(key.decode(), partition, text.decode(), VectorRecord.vector_from(vec))
            for key, text, vec, expires in zip(*[iter(reply[3:])] * 4, strict=True)
            if float(expires) > now
        ]
        return VectorChanges(records, f"{head}/{head_sequence}", reset=status == "reset", more=status == "more")

    async def stats(self) -> CacheStats:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zcard(self.prefix + "keys")
            pipe.get(self.prefix + "bytes")
            pipe.get(self.prefix + "nvec")
            pipe.hgetall(self.prefix + "bymodel")
            entries, size, vectors, by_model = await self._bounded(pipe.execute())
        return CacheStats(
            entries=int(entries),
            bytes=int(size or 0),
            vectors=int(vectors or 0),
            by_model={model.decode(): int(count) for model, count in by_model.items()},
        )

    async def close(self) -> None:
        await self.client.aclose()


def index_sets(entry: CacheEntry) -> list[str]:
    """The selector sets an entry belongs to. A model is filed under every `@`-prefix of its name,
    so invalidating group `chat` finds `chat@a,b` with one set read, as `model_matches` defines."""
    parts = entry.model.split("@")
    models = ["@".join(parts[: i + 1]) for i in range(len(parts))]
    return [f"t:{entry.tenant}", *(f"m:{m}" for m in models), *(f"g:{tag}" for tag in dict.fromkeys(entry.tags))]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
