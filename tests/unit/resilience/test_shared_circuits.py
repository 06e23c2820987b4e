"""Circuits shared through a real redis-server: what reaches Redis on the hot path, and how fast a
circuit opened by one replica reaches another."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from tests.support.redis import RedisServer, redis_server

from margin.config.model import CircuitPolicy
from margin.resilience.circuit import Admission, InMemoryCircuits
from margin.resilience.shared import SharedCircuits

pytest.importorskip("redis")
from margin.storage.redis.circuit import RedisCircuitScripts

POLICY = CircuitPolicy(failures=2, window=30, cooldown=30)


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


class Clock:
    """The replicas' monotonic clock, moved by the test: no sleeps, no timing flakiness."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


CLOCK = Clock()


@pytest.fixture
async def replicas(redis: RedisServer) -> AsyncIterator[tuple[SharedCircuits, SharedCircuits]]:
    import uuid

    prefix = f"c{uuid.uuid4().hex[:8]}:"
    made = [
        SharedCircuits(
            RedisCircuitScripts(redis.url, prefix=prefix), InMemoryCircuits(), allow_fresh_s=0.3, monotonic=CLOCK
        )
        for _ in range(2)
    ]
    yield made[0], made[1]
    for circuits in made:
        await circuits.remote.client.aclose()  # type: ignore[attr-defined]


def script_calls(redis: RedisServer) -> int:
    import redis as redis_py

    client = redis_py.Redis.from_url(redis.url)
    calls = int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
    client.close()
    return calls


async def test_ordinary_successes_cost_one_round_trip_per_interval(
    replicas: tuple[SharedCircuits, SharedCircuits], redis: RedisServer
) -> None:
    a, _ = replicas
    await a.admit("warm-up", POLICY)  # the first call of a script also loads it (NOSCRIPT, then retry)
    before = script_calls(redis)
    for _ in range(20):
        assert await a.admit("up", POLICY) is Admission.ALLOW
        await a.record("up", POLICY, "success", probe=False)
    assert script_calls(redis) - before == 1  # one admit; successes in the closed state are not sent


async def test_an_open_circuit_reaches_a_replica_within_the_freshness_interval(
    replicas: tuple[SharedCircuits, SharedCircuits],
) -> None:
    a, b = replicas
    assert await b.admit("up", POLICY) is Admission.ALLOW  # b now trusts "closed" for 0.3 s
    for _ in range(2):
        await a.record("up", POLICY, "failure", probe=False, error="503")
    assert await a.admit("up", POLICY) is Admission.REJECT
    CLOCK.now += 0.29
    assert await b.admit("up", POLICY) is Admission.ALLOW  # stale by design, for at most 0.3 s
    CLOCK.now += 0.02
    assert await b.admit("up", POLICY) is Admission.REJECT


async def test_a_replica_that_sees_a_failure_looks_again_at_once(
    replicas: tuple[SharedCircuits, SharedCircuits],
) -> None:
    a, b = replicas
    assert await b.admit("up", POLICY) is Admission.ALLOW
    for _ in range(2):
        await a.record("up", POLICY, "failure", probe=False)
    await b.record("up", POLICY, "failure", probe=False)  # b's own call failed too
    assert await b.admit("up", POLICY) is Admission.REJECT  # no waiting out the interval
