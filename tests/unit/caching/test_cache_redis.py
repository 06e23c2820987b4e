"""The Redis cache backend as replicas see it: two clients on one real redis-server share entries,
limits, invalidations and semantic vectors; an outage is a fast CacheBackendError (a miss)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from tests.support.cache_entries import Clock, entry
from tests.support.redis import RedisServer, redis_server

from margin.caching.backend import CacheBackend, CacheBackendError
from margin.caching.entry import Invalidation, VectorRecord
from margin.caching.semantic.batcher import MicroBatcher
from margin.caching.semantic.engine import SemanticEngine, SemanticPolicy
from margin.embedding import HashingEmbedder

pytest.importorskip("redis")
from margin.caching.backends.redis import RedisCacheBackend, index_sets

Replica = Callable[..., RedisCacheBackend]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def replica(redis: RedisServer) -> AsyncIterator[Replica]:
    """Clients of one keyspace: each call is another replica of the same gateway."""
    prefix = f"r{uuid.uuid4().hex[:8]}:"
    made: list[RedisCacheBackend] = []

    def build(clock: Callable[[], float] | None = None, **limits: int) -> RedisCacheBackend:
        made.append(RedisCacheBackend(redis.url, prefix=prefix, clock=clock or Clock(), **limits))
        return made[-1]

    yield build
    for backend in made:
        await backend.close()


async def test_replicas_share_entries_and_invalidations(replica: Replica) -> None:
    a, b = replica(), replica()
    await a.put(entry("t1|chat@x|1", tags=("app:y",)))
    got = await b.get("t1|chat@x|1")
    assert got is not None and got.payload == b"answer" and got.tags == ("app:y",)
    assert await b.invalidate(Invalidation(tag="app:y")) == ["t1|chat@x|1"]
    assert await a.get("t1|chat@x|1") is None
    assert (await a.stats()).entries == 0 and (await a.stats()).bytes == 0


async def test_limits_hold_across_replicas(replica: Replica) -> None:
    clock = Clock()
    a, b = replica(clock, max_entries=2), replica(clock, max_entries=2)
    await a.put(entry("k1"))
    clock.now += 1
    await b.put(entry("k2"))
    clock.now += 1
    assert await a.get("k1") is not None  # k2 is now the least recently used, for both replicas
    clock.now += 1
    assert await b.put(entry("k3")) == ["k2"]
    stats = await a.stats()
    assert stats.entries == 2 and stats.by_model == {"chat@a": 2}


async def test_expired_entries_are_swept_on_write(replica: Replica) -> None:
    clock = Clock()
    backend = replica(clock)
    await backend.put(entry("old", ttl=5, partition="p"))
    clock.now += 10
    assert await backend.put(entry("new")) == ["old"]  # swept: in-process indexes forget it too
    stats = await backend.stats()
    assert (stats.entries, stats.vectors) == (1, 0)


async def test_a_replica_tails_the_vectors_others_add(replica: Replica) -> None:
    a, b = replica(), replica()
    await a.put(entry("before", partition="p"))
    head = await b.vector_changes("p", None)
    assert head.records == [] and not head.reset
    await a.put(entry("after1", partition="p"))
    await a.put(entry("other", partition="q"))
    await a.put(entry("after2", partition="p"))
    await a.delete(["after2"])  # gone before b looked: not reported
    changes = await b.vector_changes("p", head.cursor)
    assert [r.key for r in changes.records] == ["after1"] and not changes.reset
    assert changes.records[0].text == "question after1"
    again = await b.vector_changes("p", changes.cursor)
    assert again.records == [] and again.cursor == changes.cursor


async def test_a_replica_too_far_behind_is_told_to_reload(replica: Replica) -> None:
    a = replica()
    a._stream_len = 10  # a short stream, so trimming happens within the test
    await a.put(entry("first", partition="p"))
    early = await a.vector_changes("p", None)
    for n in range(400):
        await a.put(entry(f"k{n}", partition="p"))
    assert (await a.vector_changes("p", early.cursor)).reset


async def test_semantic_engines_on_two_replicas_find_each_others_entries(replica: Replica) -> None:
    a, b = replica(), replica()
    embedder = HashingEmbedder(dim=64)
    engine_b = SemanticEngine(b, MicroBatcher(embedder, window_s=0), sync_interval_s=0)
    policy = SemanticPolicy(threshold=0.9)
    text = "how do i brew a good cup of tea at home"
    vector = embedder.embed([text])[0]
    assert await engine_b.find("p", text, vector, policy) is None  # loads the (empty) partition
    await a.put(dataclasses.replace(entry("tea"), vector=VectorRecord("tea", "p", text, vector)))
    match = await engine_b.find("p", text, vector, policy)
    assert match is not None and match.key == "tea" and match.similarity == pytest.approx(1.0, abs=1e-5)
    await engine_b.close()


async def test_an_outage_is_a_fast_backend_error() -> None:
    with redis_server() as server:
        backend: CacheBackend = RedisCacheBackend(server.url, prefix="o:", timeout_s=0.2)
        await backend.put(entry("k"))
        server.stop()
        started = time.monotonic()
        with pytest.raises(CacheBackendError):
            await backend.get("k")
        with pytest.raises(CacheBackendError):
            await backend.put(entry("k2"))
        assert time.monotonic() - started < 1.0
        await backend.close()


def test_models_are_filed_under_every_group_prefix() -> None:
    sets = index_sets(entry("k", tenant="key:o/1", model="chat@a,b", tags=("x", "x", "y")))
    assert sets == ["t:key:o/1", "m:chat", "m:chat@a,b", "g:x", "g:y"]


async def test_a_large_invalidation_runs_in_chunks_and_drops_everything_it_selects(replica: Replica) -> None:
    backend = replica()
    for n in range(1200):  # more than two chunks of candidates
        await backend.put(entry(f"t1|chat@a|{n:05d}", tags=("bulk",) if n % 2 == 0 else ()))
    dropped = await backend.invalidate(Invalidation(tenant="t1", tag="bulk"))
    assert len(dropped) == 600 and dropped == sorted(dropped) and all(int(k[-5:]) % 2 == 0 for k in dropped)
    assert (await backend.stats()).entries == 600
    assert len(await backend.invalidate(Invalidation(everything=True))) == 600
