"""The CacheBackend contract, one suite run against every response-cache backend: memory, SQLite
(a temp file) and Redis (a real redis-server from tests/support; skipped locally when missing,
failing under CI). Backend-specific behaviour (a restart, replicas) is tested after the suite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.support.cache_entries import Clock, entry
from tests.support.redis import RedisServer, redis_server

from margin.caching.backend import CacheBackend, CacheBackendError
from margin.caching.backends.memory import MemoryCacheBackend
from margin.caching.backends.sqlite import SqliteCacheBackend
from margin.caching.entry import Invalidation

Make = Callable[..., CacheBackend]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Make]:
    made: list[CacheBackend] = []
    prefix = f"test{uuid.uuid4().hex[:8]}:"  # one Redis for the module; every test its own keyspace

    def build(clock: Clock, **limits: int) -> CacheBackend:
        backend: CacheBackend
        if request.param == "sqlite":
            backend = SqliteCacheBackend(tmp_path / f"cache{len(made)}.db", clock=clock, **limits)
        elif request.param == "redis":
            from margin.caching.backends.redis import RedisCacheBackend

            server: RedisServer = request.getfixturevalue("redis")
            backend = RedisCacheBackend(server.url, prefix=prefix + f"{len(made)}:", clock=clock, **limits)
        else:
            backend = MemoryCacheBackend(clock=clock, **limits)
        made.append(backend)
        return backend

    yield build
    for backend in made:
        await backend.close()


async def test_put_get_roundtrip(make: Make) -> None:
    backend = make(Clock())
    assert await backend.get("k") is None
    assert await backend.put(entry("k", tags=("a", "b"))) == []
    got = await backend.get("k")
    assert got is not None and got.payload == b"answer" and got.tenant == "t1" and set(got.tags) == {"a", "b"}
    await backend.put(entry("k", payload=b"newer"))
    got = await backend.get("k")
    assert got is not None and got.payload == b"newer"
    assert (await backend.stats()).entries == 1


async def test_expired_entries_are_never_returned(make: Make) -> None:
    clock = Clock()
    backend = make(clock)
    await backend.put(entry("k", ttl=10, partition="p"))
    clock.now += 9.9
    assert await backend.get("k") is not None
    clock.now += 0.2
    assert await backend.get("k") is None
    assert await backend.vectors("p") == []


async def test_lru_eviction_by_count_returns_the_evicted_keys(make: Make) -> None:
    clock = Clock()
    backend = make(clock, max_entries=3)
    for key in ("a", "b", "c"):
        await backend.put(entry(key))
        clock.now += 1
    assert await backend.get("a") is not None  # a is now the most recently used
    clock.now += 1
    assert await backend.put(entry("d")) == ["b"]
    assert await backend.get("b") is None
    assert {k for k in "acd" if await backend.get(k) is not None} == set("acd")


async def test_lru_eviction_by_bytes(make: Make) -> None:
    clock = Clock()
    backend = make(clock, max_bytes=2500)
    for key in ("a", "b", "c"):
        await backend.put(entry(key, payload=b"x" * 1000))
        clock.now += 1
    stats = await backend.stats()
    assert stats.entries == 2 and stats.bytes <= 2500
    assert await backend.get("a") is None


async def test_invalidation_selectors(make: Make) -> None:
    backend = make(Clock())
    await backend.put(entry("t1|chat@a|1", tenant="t1", model="chat@a", tags=("team:x",)))
    await backend.put(entry("t1|other@a|2", tenant="t1", model="other@a"))
    await backend.put(entry("t2|chat@b|3", tenant="t2", model="chat@b", tags=("team:x", "app:y")))
    await backend.put(entry("t2|chatty|4", tenant="t2", model="chatty"))
    assert await backend.invalidate(Invalidation()) == []  # an empty selector never wipes the cache
    assert sorted(await backend.invalidate(Invalidation(model="chat"))) == ["t1|chat@a|1", "t2|chat@b|3"]
    await backend.put(entry("t1|chat@a|1", tenant="t1", model="chat@a", tags=("team:x",)))
    await backend.put(entry("t2|chat@b|3", tenant="t2", model="chat@b", tags=("team:x", "app:y")))
    assert await backend.invalidate(Invalidation(tag="app:y")) == ["t2|chat@b|3"]
    assert await backend.invalidate(Invalidation(tenant="t1", tag="team:x")) == ["t1|chat@a|1"]
    assert await backend.invalidate(Invalidation(key_prefix="t1|")) == ["t1|other@a|2"]
    assert await backend.invalidate(Invalidation(everything=True)) == ["t2|chatty|4"]
    assert (await backend.stats()).entries == 0


async def test_vectors_per_partition_die_with_their_entries(make: Make) -> None:
    backend = make(Clock())
    await backend.put(entry("a", partition="p1"))
    await backend.put(entry("b", partition="p1"))
    await backend.put(entry("c", partition="p2"))
    await backend.put(entry("d"))
    records = await backend.vectors("p1")
    assert [r.key for r in records] == ["a", "b"]
    assert records[0].text == "question a" and records[0].vector.dtype == np.float32
    assert float(np.linalg.norm(records[0].vector)) == pytest.approx(1.0)
    assert await backend.delete(["a", "zzz"]) == 1
    assert [r.key for r in await backend.vectors("p1")] == ["b"]
    await backend.put(entry("b"))  # replaced without a vector
    assert await backend.vectors("p1") == []
    assert (await backend.stats()).vectors == 1


async def test_delete_counts_only_what_existed(make: Make) -> None:
    backend = make(Clock())
    await backend.put(entry("a", tags=("x",)))
    await backend.put(entry("b"))
    assert await backend.delete([]) == 0
    assert await backend.delete(["a", "missing"]) == 1
    assert await backend.get("a") is None and await backend.get("b") is not None
    assert await backend.invalidate(Invalidation(tag="x")) == []  # its tag left with it
    assert (await backend.stats()).entries == 1


async def test_stats_count_entries_bytes_vectors_and_models(make: Make) -> None:
    backend = make(Clock())
    entries = [
        entry("a", model="chat@a", payload=b"x" * 100, partition="p"),
        entry("b", model="chat@a", payload=b"y" * 50),
        entry("c", model="other", payload=b"z" * 10),
    ]
    for item in entries:
        await backend.put(item)
    stats = await backend.stats()
    assert stats.entries == 3 and stats.vectors == 1
    assert stats.by_model == {"chat@a": 2, "other": 1}
    assert stats.bytes == sum(item.size for item in entries) > 160


async def test_vector_changes_from_the_head_report_nothing_new(make: Make) -> None:
    """cursor=None asks only for the current position: no records, whatever the backend holds."""
    backend = make(Clock())
    await backend.put(entry("a", partition="p"))
    head = await backend.vector_changes("p", None)
    assert head.records == [] and not head.reset
    assert isinstance(head.cursor, str)


async def test_sqlite_survives_a_restart(tmp_path: Path) -> None:
    first = SqliteCacheBackend(tmp_path / "c.db", clock=Clock())
    await first.put(entry("k", partition="p", tags=("x",)))
    await first.close()
    second = SqliteCacheBackend(tmp_path / "c.db", clock=Clock())
    try:
        assert (await second.get("k")) is not None
        assert [r.key for r in await second.vectors("p")] == ["k"]
        assert (await second.stats()).entries == 1
        assert await second.invalidate(Invalidation(tag="x")) == ["k"]
    finally:
        await second.close()


async def test_sqlite_errors_become_backend_errors(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    backend = SqliteCacheBackend(tmp_path / "dir.db")
    with pytest.raises(CacheBackendError):
        await backend.get("k")
    await backend.close()


async def test_backends_meet_the_protocol(make: Make) -> None:
    assert isinstance(make(Clock()), CacheBackend)
