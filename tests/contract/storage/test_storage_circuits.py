"""The shared circuit-breaker contract, one suite run against both backends of `SharedCircuits`: a
real redis-server (`RedisCircuitScripts`) and a SQLite file (`SqliteCircuitScripts`, what
`margin serve --workers N` uses on the embedded default). Two store clients are two replicas (or two
worker processes): each has its own connection and its own in-process fallback breaker. The clock
is the backend's own (Redis TIME, the host's wall clock), so cool-downs and windows are waited out
for real, in tenths of a second."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from tests.support.redis import RedisServer, redis_server

from margin.config.model import CircuitPolicy
from margin.resilience.circuit import Admission, CircuitState, InMemoryCircuits
from margin.resilience.shared import CircuitScripts, SharedCircuits

POLICY = CircuitPolicy(failures=2, window=30, cooldown=0.3)
Replica = Callable[[], SharedCircuits]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
async def replica(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Replica]:
    """A factory of replicas sharing ONE circuit store."""
    made: list[CircuitScripts] = []
    prefix = f"c{uuid.uuid4().hex[:8]}:"

    def factory() -> SharedCircuits:
        scripts: CircuitScripts
        if request.param == "sqlite":
            from margin.storage.sqlite.circuits import SqliteCircuitScripts

            scripts = SqliteCircuitScripts(tmp_path / "circuits.db")
        else:
            from margin.storage.redis.circuit import RedisCircuitScripts

            scripts = RedisCircuitScripts(request.getfixturevalue("redis").url, prefix=prefix)
        made.append(scripts)
        return SharedCircuits(scripts, InMemoryCircuits(), allow_fresh_s=0)

    yield factory
    for scripts in made:
        await scripts.close()  # type: ignore[attr-defined]


async def _open(circuits: SharedCircuits, deployment: str = "up") -> None:
    for _ in range(POLICY.failures):
        await circuits.record(deployment, POLICY, "failure", probe=False, error="503 from upstream")


async def test_failures_seen_by_different_replicas_add_up(replica: Replica) -> None:
    a, b = replica(), replica()
    await a.record("up", POLICY, "failure", probe=False, error="first")
    assert await b.admit("up", POLICY) is Admission.ALLOW  # one failure: still closed, for both
    await b.record("up", POLICY, "failure", probe=False, error="second")
    assert await a.admit("up", POLICY) is Admission.REJECT
    assert await b.admit("up", POLICY) is Admission.REJECT
    assert await a.admit("other", POLICY) is Admission.ALLOW  # one circuit per deployment
    (view,) = await b.views({"up": POLICY})
    assert (view.state, view.times_opened, view.last_error) == (CircuitState.OPEN, 1, "second")
    assert view.opened_s_ago is not None and 0 <= view.opened_s_ago < 5


async def test_after_the_cooldown_exactly_one_replica_probes(replica: Replica) -> None:
    replicas = [replica() for _ in range(4)]
    await _open(replicas[0])
    await asyncio.sleep(POLICY.cooldown + 0.05)
    verdicts = await asyncio.gather(*(r.admit("up", POLICY) for r in replicas * 2))
    assert sorted(verdicts).count(Admission.PROBE) == 1
    assert set(verdicts) == {Admission.PROBE, Admission.REJECT}
    (view,) = await replicas[1].views({"up": POLICY})
    assert view.state is CircuitState.HALF_OPEN


async def test_the_probes_outcome_decides_for_every_replica(replica: Replica) -> None:
    a, b = replica(), replica()
    await _open(a)
    await asyncio.sleep(POLICY.cooldown + 0.05)
    assert await a.admit("up", POLICY) is Admission.PROBE
    await a.record("up", POLICY, "failure", probe=True, error="still down")
    assert await b.admit("up", POLICY) is Admission.REJECT  # opened again, a fresh cool-down
    (view,) = await b.views({"up": POLICY})
    assert (view.state, view.times_opened) == (CircuitState.OPEN, 2)
    await asyncio.sleep(POLICY.cooldown + 0.05)
    assert await b.admit("up", POLICY) is Admission.PROBE
    await b.record("up", POLICY, "success", probe=True)
    assert await a.admit("up", POLICY) is Admission.ALLOW
    (view,) = await a.views({"up": POLICY})
    assert (view.state, view.failures, view.opened_s_ago) == (CircuitState.CLOSED, 0, None)


async def test_a_neutral_probe_hands_the_probe_to_the_next_caller(replica: Replica) -> None:
    a, b = replica(), replica()
    await _open(a)
    await asyncio.sleep(POLICY.cooldown + 0.05)
    assert await a.admit("up", POLICY) is Admission.PROBE
    assert await b.admit("up", POLICY) is Admission.REJECT  # the probe is out
    await a.record("up", POLICY, "neutral", probe=True)  # the client left: no verdict on the upstream
    assert await b.admit("up", POLICY) is Admission.PROBE


async def test_failures_older_than_the_window_do_not_count(replica: Replica) -> None:
    short = CircuitPolicy(failures=2, window=0.3, cooldown=30)
    a, b = replica(), replica()
    await a.record("up", short, "failure", probe=False)
    await asyncio.sleep(0.4)
    await b.record("up", short, "failure", probe=False)
    assert await a.admit("up", short) is Admission.ALLOW
    (view,) = await a.views({"up": short})
    assert (view.state, view.failures) == (CircuitState.CLOSED, 1)
    await a.record("up", short, "failure", probe=False)
    assert await b.admit("up", short) is Admission.REJECT
