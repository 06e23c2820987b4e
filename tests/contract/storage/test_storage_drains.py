"""Drains shared through the object store (margin.autoscale.drains) on SQLite and a real PostgreSQL:
two replicas' standbys and balancers over one store, a drain taken by one applied by the other at
its next refresh, kept by a replica started later, undone by an undrain or by its not_after passing;
every change audited."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.postgres import PostgresServer, postgres_server

from margin.autoscale.drains import EXPIRY_ACTOR, DrainSync
from margin.autoscale.standby import Standby
from margin.config.autoscale import BalanceConfig
from margin.providers.balance import Balancer
from margin.storage.team_stores import open_object_store
from margin.storage.teams import ObjectStore

BASES = ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/margin.db"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"d_{uuid.uuid4().hex[:12]}")


async def never(name: str) -> bool:
    return False


class Replica:
    """One gateway's standby (deployments `gpu` with two replicas, `api`) and its drain sync."""

    def __init__(self, store: ObjectStore, every_s: float = 3600.0) -> None:
        self.store = store
        self.standby = Standby({}, probe=never, wake=lambda n, b: None, names=["gpu", "api"])
        self.balancer = Balancer(BASES, BalanceConfig())
        self.sync = DrainSync(store, self.standby, lambda n: self.balancer if n == "gpu" else None, every_s=every_s)

    def state(self, name: str = "gpu") -> str:
        return self.standby.standby_state(name)

    def drained_hosts(self) -> list[bool]:
        return [e.drained for e in self.balancer.endpoints]


async def opened(url: str, tmp_path: Path) -> ObjectStore:
    store = open_object_store(url, tmp_path)
    await store.migrate()
    return store


async def test_a_drain_on_one_replica_reaches_the_other_and_survives_a_restart(url: str, tmp_path: Path) -> None:
    a, b = Replica(await opened(url, tmp_path)), Replica(await opened(url, tmp_path), every_s=0.05)
    await a.sync.start()
    await b.sync.start()
    try:
        not_after = time.time() + 3600  # in force for the whole test
        await a.sync.drain("gpu", None, reason="spot-interruption", by="metrics-token", not_after=not_after)
        assert a.state() == "drained"
        await asyncio.sleep(0.3)  # b's refresh interval, several times
        assert b.state() == "drained" and b.state("api") == "ready"
        assert b.standby.describe("gpu")["drained"]["by"] == "metrics-token"
        assert await b.standby.admit("gpu", "interactive") == "drained"

        c = Replica(await opened(url, tmp_path))  # a replica (re)started after the notice
        await c.sync.start()
        assert c.state() == "drained"
        await c.sync.stop()
        await c.store.close()

        await b.sync.undrain("gpu", None, by="admin:sk-margin-Ab")
        assert b.state() == "ready"
        await a.sync.refresh()
        assert a.state() == "ready" and await a.standby.admit("gpu", "interactive") is None
    finally:
        for r in (a, b):
            await r.sync.stop()
            await r.store.close()


async def test_replica_drains_and_the_audit_trail(url: str, tmp_path: Path) -> None:
    a, b = Replica(await opened(url, tmp_path)), Replica(await opened(url, tmp_path))
    try:
        await a.sync.drain("gpu", "10.0.0.1:8000", reason="spot", by="admin:sk-margin-Ab", not_after=None)
        await b.sync.refresh()
        assert b.drained_hosts() == [True, False] and b.state() == "ready"  # one replica of two: still serving
        await a.sync.drain("gpu", "10.0.0.2:8000", reason="spot", by="metrics-token", not_after=None)
        await a.sync.drain("gpu", "10.0.0.2:8000", reason="spot again", by="metrics-token", not_after=None)
        await b.sync.refresh()
        assert b.drained_hosts() == [True, True] and b.state() == "drained"  # its last replica: drained
        await a.sync.undrain("gpu", "10.0.0.1:8000", by="admin:sk-margin-Ab")
        await b.sync.refresh()
        assert b.drained_hosts() == [False, True] and b.state() == "ready"
        await a.sync.undrain("gpu", None, by="admin:sk-margin-Ab")
        await a.sync.undrain("api", None, by="admin:sk-margin-Ab")  # nothing drained: audited all the same
        await b.sync.refresh()
        assert b.drained_hosts() == [False, False] and await b.store.objects("drain") == []
        changes = await b.store.changes(kind="drain")
        assert [(c.object_id, c.action, c.actor) for c in reversed(changes)] == [
            ("gpu@10.0.0.1:8000", "create", "admin:sk-margin-Ab"),
            ("gpu@10.0.0.2:8000", "create", "metrics-token"),
            ("gpu@10.0.0.2:8000", "update", "metrics-token"),
            ("gpu@10.0.0.1:8000", "delete", "admin:sk-margin-Ab"),
            ("gpu@10.0.0.2:8000", "delete", "admin:sk-margin-Ab"),
            ("api", "delete", "admin:sk-margin-Ab"),
        ]
        update = changes[3]
        assert update.before is not None and update.before["reason"] == "spot"
        assert update.after is not None and update.after["reason"] == "spot again"
        assert changes[0].before is None and changes[0].after is None
    finally:
        await a.store.close()
        await b.store.close()


async def test_a_drain_expires_at_its_not_after_on_every_replica(url: str, tmp_path: Path) -> None:
    a, b = Replica(await opened(url, tmp_path)), Replica(await opened(url, tmp_path), every_s=0.05)
    await b.sync.start()
    try:
        not_after = time.time() + 2.0
        await a.sync.drain("gpu", None, reason="spot-interruption", by="metrics-token", not_after=not_after,
                           via="termination-notice")  # fmt: skip
        await a.sync.drain("gpu", "10.0.0.1:8000", reason="spot", by="metrics-token", not_after=not_after)
        await a.sync.drain("api", None, reason="maintenance", by="admin:sk-margin-Ab", not_after=None)
        await b.sync.refresh()
        assert b.state() == "drained" and b.drained_hosts() == [True, False] and b.state("api") == "drained"
        assert b.standby.describe("gpu")["drained"]["not_after"] == not_after

        async with asyncio.timeout(10):  # b's own refreshes (every 0.05 s) notice the expiry
            while b.state() == "drained":
                await asyncio.sleep(0.02)
        assert time.time() >= not_after  # served again only once not_after passed
        assert b.drained_hosts() == [False, False] and await b.standby.admit("gpu", "interactive") is None
        assert b.standby.describe("gpu")["drained"] is None
        assert b.state("api") == "drained"  # a drain without not_after stays

        assert a.state() == "drained"  # a reads the store only at its next refresh
        await a.sync.refresh()
        assert a.state() == "ready" and a.drained_hosts() == [False, False] and a.state("api") == "drained"
        assert [o.object_id for o in await a.store.objects("drain")] == ["api"]
        expiries = [c for c in await a.store.changes(kind="drain") if c.actor == EXPIRY_ACTOR]
        assert sorted((c.object_id, c.action) for c in expiries) == [("gpu", "delete"), ("gpu@10.0.0.1:8000", "delete")]
        assert all(c.before is not None and c.before["not_after"] == not_after and c.after is None for c in expiries)
    finally:
        await b.sync.stop()
        for r in (a, b):
            await r.store.close()


async def test_a_notice_with_a_passed_not_after_is_audited_but_drains_nothing(url: str, tmp_path: Path) -> None:
    a = Replica(await opened(url, tmp_path))
    try:
        await a.sync.drain("gpu", None, reason="late", by="metrics-token", not_after=time.time() - 1)
        assert a.state() == "ready" and await a.store.objects("drain") == []
        changes = await a.store.changes(kind="drain", object_id="gpu")
        assert [(c.action, c.actor) for c in reversed(changes)] == [
            ("create", "metrics-token"),
            ("delete", EXPIRY_ACTOR),
        ]
    finally:
        await a.store.close()
