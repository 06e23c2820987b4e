"""Issue 15, 4 on real servers: a replica killed (SIGKILL) in the middle of a burst loses neither
money nor ledger rows. Three `margin serve` processes share redis-server and PostgreSQL; one key
has $1.00; each request's worst case is $0.05, its actual cost $0.03 (tests/e2e/limits_cluster.py);
the fake upstream holds each answer 3 s so that the killed replica has attempts in flight.

After the kill, whichever way the dead replica's work is taken over (its successor replays its
journal on the same data dir, or the survivors sweep its reservations from Redis):
- every upstream call has its ledger row: rows (unreconciled included) == the fake's call count,
  give or take unreconciled rows of attempts the kill caught between their durable mark and their
  first byte upstream (charged at the reserved amount, as their outcome cannot be known);
- the dead replica's reservations are settled as spent at the reserved amount, never released:
  after two lease periods (when its holds would have lapsed) another burst still cannot take the
  key past $1.00, counting unreconciled rows at their reserved $0.05;
- the budget counter and the ledger agree to the nano-dollar.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.limits_cluster import ADMIN, ANSWER, REQUEST, cluster_config
from tests.support.cli import run_margin
from tests.support.postgres import postgres_server
from tests.support.processes import fake_upstream, gateway_process
from tests.support.redis import redis_server

pytestmark = pytest.mark.slow

LEASE_S = 8.0  # short leases: a hold left to lapse would be free again within the test
UPSTREAM_DELAY_S = 3.0
AHEAD = 5  # requests sent to the victim first: it surely holds reservations in flight when killed
KILL_AFTER_S = 0.3  # into the rest of the burst
HEARTBEAT_TTL_S = 10.0  # margin.budgets.sweeper's default: a dead replica is noticed within this
BUDGET = Decimal("1.00")
REFUSED = {402, 503}  # over budget; or limits_unavailable when Redis answers late on a loaded machine


@dataclass
class Replica:
    folder: Path
    url: str = ""
    process: Any = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


@dataclass
class CrashCluster:
    config: str
    upstream: str
    database: str
    replicas: list[Replica]

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas if r.process is not None]

    def start(self, replica: Replica, *, data_dir: Path | None = None) -> None:
        folder = replica.folder / f"run{len(list(replica.folder.glob('run*')))}"
        folder.mkdir()
        env = {"MARGIN_ADMIN_KEY": ADMIN, "MARGIN_DATA_DIR": str(data_dir or replica.folder / "data")}
        replica.url, replica.process = replica.stack.enter_context(gateway_process(self.config, folder, env=env,
                                                                                   timeout=60))  # fmt: skip

    def kill(self, replica: Replica) -> None:
        os.kill(replica.process.pid, signal.SIGKILL)
        replica.process.wait()
        replica.stack.close()
        replica.process = None

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN}"}
        return httpx.request(method, f"{self.urls[0]}{path}", headers=headers, timeout=10, **kwargs)

    def create_key(self, name: str) -> tuple[str, str]:
        response = self.admin("POST", "/admin/keys", json={"name": name, "budget": {"limit_usd": str(BUDGET)}})
        assert response.status_code == 201, response.text
        key = response.json()["key"]
        prefix = key[: len("sk-margin-") + 6]
        listed = self.admin("GET", "/admin/keys").json()["data"]
        return key, str(next(k["key_id"] for k in listed if k["prefix"].startswith(prefix)))

    def upstream_calls(self) -> int:
        return int(httpx.get(f"{self.upstream}/_fake/stats").json()["total"])

    def slow_upstream(self, on: bool) -> None:
        spec = f"delay={UPSTREAM_DELAY_S}" if on else ""
        assert httpx.post(f"{self.upstream}/_fake/faults", json={"fake-metered": spec}).status_code == 200

    def spent(self, key_id: str) -> Decimal:
        entry = next(
            b for b in self.admin("GET", "/admin/budgets/status").json()["data"] if b["scope"] == f"key:{key_id}"
        )
        return Decimal(entry["spent"])

    def ledger(self, key_id: str) -> dict[str, Any]:
        import psycopg

        with psycopg.connect(self.database) as conn:
            rows = conn.execute(
                # refused rows record a 402 from margin's own limits: no upstream attempt, cost 0
                "SELECT status, price_basis, cost_total FROM ledger_attempts WHERE key_id = %s AND status <> 'refused'",
                (key_id,),
            ).fetchall()
        return {
            "rows": len(rows),
            "unreconciled": sum(1 for status, basis, _ in rows if status == "unreconciled" and basis == "unreconciled"),
            "cost": sum((Decimal(cost) for _, _, cost in rows), Decimal(0)),
        }


@pytest.fixture(scope="module")
def crash_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashCluster]:
    tmp = tmp_path_factory.mktemp("crash-cluster")
    with contextlib.ExitStack() as stack:
        pg = stack.enter_context(postgres_server())
        redis = stack.enter_context(redis_server())
        upstream = stack.enter_context(fake_upstream("--content", ANSWER))
        database = pg.create_database(f"crash_{uuid.uuid4().hex[:10]}")
        config = cluster_config(upstream, database, redis.url).replace(
            "fail_open_share: 0.5}", f"fail_open_share: 0.5, lease_s: {LEASE_S}}}"
        )
        assert f"lease_s: {LEASE_S}" in config
        replicas = []
        for n in range(3):
            (tmp / f"replica{n}").mkdir()
            replicas.append(Replica(tmp / f"replica{n}"))
        running = CrashCluster(config, upstream, database, replicas)
        for replica in replicas:
            running.start(replica)
            stack.callback(replica.stack.close)
        yield running


async def _one(http: httpx.AsyncClient, url: str, key: str) -> int:
    try:
        response = await http.post(f"{url}/v1/chat/completions", json=REQUEST,
                                   headers={"authorization": f"Bearer {key}"})  # fmt: skip
    except httpx.TransportError:
        return 0  # its replica was killed under it
    return response.status_code


async def _burst_with_kill(cluster: CrashCluster, key: str, victim: Replica | None, count: int = 200) -> list[int]:
    """`count` requests at once, round-robin. With a victim: its first few go out ahead of the rest
    and, once the upstream holds them, the rest follow and the victim is killed under them all."""
    urls = cluster.urls
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        ahead: list[asyncio.Task[int]] = []
        if victim is not None:
            calls = await asyncio.to_thread(cluster.upstream_calls)
            ahead = [asyncio.create_task(_one(http, victim.url, key)) for _ in range(AHEAD)]
            await _upstream_holds(cluster, calls + AHEAD)
        rest = asyncio.gather(*(_one(http, urls[i % len(urls)], key) for i in range(count - len(ahead))))
        if victim is not None:
            await asyncio.sleep(KILL_AFTER_S)
            await asyncio.to_thread(cluster.kill, victim)
        return list(await asyncio.gather(*ahead)) + list(await rest)


async def _upstream_holds(cluster: CrashCluster, calls: int) -> None:
    deadline = time.monotonic() + UPSTREAM_DELAY_S
    while await asyncio.to_thread(cluster.upstream_calls) < calls:
        assert time.monotonic() < deadline, "the victim's requests did not reach the upstream in time"
        await asyncio.sleep(0.02)


def _settled(cluster: CrashCluster, key_id: str, calls_before: int, timeout: float = 30.0) -> dict[str, Any]:
    """The key's ledger once it has a row for every upstream call since `calls_before` (or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        calls = cluster.upstream_calls() - calls_before
        found = cluster.ledger(key_id)
        if found["rows"] >= calls or time.monotonic() > deadline:
            return {**found, "calls": calls}
        time.sleep(0.3)


def _takeover_then_second_burst(cluster: CrashCluster, key: str, key_id: str, before: int) -> dict[str, Any]:
    """Wait until the dead replica's holds would have lapsed, burst again at full speed, and read back."""
    time.sleep(2 * LEASE_S + 1)
    cluster.slow_upstream(False)
    second = asyncio.run(_burst_with_kill(cluster, key, None))
    assert set(second) <= REFUSED | {200}, sorted(set(second))
    found = _settled(cluster, key_id, before)
    deadline = time.monotonic() + 10
    while cluster.spent(key_id) != found["cost"] and time.monotonic() < deadline:
        time.sleep(0.3)  # the last settles reach the counter in the background
    return {**found, "spent": cluster.spent(key_id)}


def _assert_nothing_lost(found: dict[str, Any]) -> None:
    assert found["unreconciled"] >= 1, found  # the kill did catch attempts in flight
    # Every upstream call has its row; the only rows without a call are unreconciled ones whose
    # attempt the kill caught after its mark and before its first byte went upstream.
    assert found["rows"] - found["unreconciled"] <= found["calls"] <= found["rows"], found
    assert found["cost"] <= BUDGET, found  # unreconciled rows at the reserved $0.05
    assert found["spent"] == found["cost"], found  # the counter and the ledger agree


def test_a_replica_killed_mid_burst_and_restarted_on_its_data_dir(crash_cluster: CrashCluster) -> None:
    key, key_id = crash_cluster.create_key("restarted")
    before = crash_cluster.upstream_calls()
    crash_cluster.slow_upstream(True)
    victim = crash_cluster.replicas[2]
    first = asyncio.run(_burst_with_kill(crash_cluster, key, victim))
    assert first.count(0) >= 1 and set(first) <= REFUSED | {0, 200}, sorted(set(first))
    crash_cluster.start(victim)  # the same data dir: its journal is replayed at start-up
    journal = victim.folder / "data" / "journal"
    assert len({p.name.split(".")[0] for p in journal.glob("*.jsonl")}) <= 1  # the dead one's is gone
    found = _takeover_then_second_burst(crash_cluster, key, key_id, before)
    _assert_nothing_lost(found)
    _an_operator_reconciles_one(crash_cluster, key_id, victim.folder)


def _an_operator_reconciles_one(cluster: CrashCluster, key_id: str, tmp: Path) -> None:
    """`margin reconcile`: the unreconciled rows are listed, and one is settled at its actual usage."""
    config = tmp / "reconcile.yaml"
    config.write_text(cluster.config)
    env = {"MARGIN_ADMIN_KEY": ADMIN}
    listed = run_margin("reconcile", "list", "--config", config, data_dir=tmp / "cli", env=env)
    assert listed.returncode == 0, listed.stderr
    ours = [line.split("\t") for line in listed.stdout.splitlines() if f"\t{key_id}\t" in line]
    assert ours and all(cost == "$0.050000000000" for *_, cost in ours), listed.stdout
    attempt_id = ours[0][0]
    settled = run_margin("reconcile", "settle", attempt_id, "--input", "7", "--output", "23", "--note", "provider log",
                         "--actor", "ops", "--config", config, data_dir=tmp / "cli", env=env)  # fmt: skip
    assert settled.returncode == 0, settled.stderr
    assert "$0.050000000000 -> $0.030000000000" in settled.stdout
    again = run_margin("reconcile", "list", "--config", config, data_dir=tmp / "cli", env=env)
    assert attempt_id not in again.stdout
    import psycopg

    with psycopg.connect(cluster.database) as conn:
        audit = conn.execute("SELECT actor, detail FROM ledger_audit WHERE action = 'reconcile'").fetchall()
    assert [actor for actor, _ in audit] == ["ops"] and attempt_id in str(audit[0][1])


def test_a_replica_killed_mid_burst_for_good_is_swept_by_the_survivors(crash_cluster: CrashCluster) -> None:
    key, key_id = crash_cluster.create_key("gone")
    before = crash_cluster.upstream_calls()
    crash_cluster.slow_upstream(True)
    victim = crash_cluster.replicas[1]
    first = asyncio.run(_burst_with_kill(crash_cluster, key, victim))
    assert first.count(0) >= 1 and set(first) <= REFUSED | {0, 200}, sorted(set(first))
    time.sleep(HEARTBEAT_TTL_S + 3)  # its heartbeat lapses; a survivor sweeps within its next round
    swept = crash_cluster.ledger(key_id)
    assert swept["unreconciled"] >= 1, swept  # swept well before its holds would have lapsed
    found = _takeover_then_second_burst(crash_cluster, key, key_id, before)
    _assert_nothing_lost(found)
