"""The RolloutStore contract on SQLite and a real PostgreSQL: one live rollout per group, audited
compare-and-set transitions, signals that add up across writers, requests found in the ledger."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.ledger_rows import make_row
from tests.support.postgres import PostgresServer, postgres_server

from margin.storage import LedgerStore, open_ledger_store
from margin.storage.rollout_stores import open_rollout_store
from margin.storage.rollouts import (
    DriftRecord,
    DuplicateRollout,
    Feedback,
    RolloutRecord,
    RolloutStore,
    SampleRecord,
    SignalDelta,
    TransitionRecord,
)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[RolloutStore, LedgerStore]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/margin.db"
    else:
        server: PostgresServer = request.getfixturevalue("pg_server")
        url = server.create_database(f"r_{uuid.uuid4().hex[:12]}")
    ledger = open_ledger_store(url, tmp_path)
    await ledger.migrate()
    store = open_rollout_store(url, tmp_path)
    await store.migrate()
    yield store, ledger
    await store.close()
    await ledger.close()


def rollout(rollout_id: str = "ro_1", group: str = "chat", **changes: object) -> RolloutRecord:
    base = RolloutRecord(
        rollout_id=rollout_id, model_group=group, stable="big", candidate="small", state="pending", step=-1,
        paused=False, plan={"steps": [{"share": 0.01}]}, created_at=100.0, updated_at=100.0,
        stage_started_at=100.0, version=0, created_by="cli:test", reason="started",
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def created(record: RolloutRecord) -> TransitionRecord:
    return TransitionRecord(record.rollout_id, 0, record.created_at, "", record.state, -1, -1, "cli:test", "started")


async def test_one_live_rollout_per_group_and_terminal_ones_free_the_group(
    stores: tuple[RolloutStore, LedgerStore],
) -> None:
    store, _ = stores
    first = rollout()
    await store.create(first, created(first))
    with pytest.raises(DuplicateRollout, match="chat"):
        await store.create(rollout("ro_2"), created(rollout("ro_2")))
    assert [r.rollout_id for r in await store.recent()] == ["ro_1"]  # nothing half-written
    assert [e.seq for e in await store.history("ro_2")] == []
    ended = rollout(state="aborted", version=1, updated_at=101.0, reason="operator")
    entry = TransitionRecord("ro_1", 1, 101.0, "pending", "aborted", -1, -1, "cli:test", "operator", {"n": 3})
    assert await store.transition(ended, 0, entry)
    second = rollout("ro_2", created_at=102.0)
    await store.create(second, created(second))
    assert [r.rollout_id for r in await store.recent(model_group="chat")] == ["ro_2", "ro_1"]


async def test_transitions_are_compare_and_set_and_audited(stores: tuple[RolloutStore, LedgerStore]) -> None:
    store, _ = stores
    record = rollout()
    await store.create(record, created(record))
    moved = rollout(state="canary", step=0, version=1, updated_at=105.0, stage_started_at=105.0, reason="gate ok")
    entry = TransitionRecord("ro_1", 1, 105.0, "pending", "canary", -1, 0, "auto:test", "gate ok", {"p": 0.5})
    assert await store.transition(moved, 0, entry)
    stale = rollout(state="rolled_back", version=1, reason="late")
    late = TransitionRecord("ro_1", 1, 106.0, "pending", "rolled_back", -1, -1, "auto:other", "late")
    assert not await store.transition(stale, 0, late)  # beaten: nothing written
    assert await store.get("ro_1") == moved
    history = await store.history("ro_1")
    assert [(e.seq, e.to_state, e.actor, e.snapshot) for e in history] == [
        (0, "pending", "cli:test", {}),
        (1, "canary", "auto:test", {"p": 0.5}),
    ]
    assert [r.rollout_id for r in await store.current()] == ["ro_1"]


async def test_current_keeps_the_latest_promoted_rollout_of_each_group(
    stores: tuple[RolloutStore, LedgerStore],
) -> None:
    store, _ = stores
    for i, at in ((1, 100.0), (2, 200.0)):
        record = rollout(f"ro_{i}", created_at=at)
        await store.create(record, created(record))
        done = rollout(f"ro_{i}", state="promoted", version=1, updated_at=at + 1, created_at=at)
        assert await store.transition(done, 0, TransitionRecord(f"ro_{i}", 1, at, "canary", "promoted", 3, 3, "a", "r"))
    assert [r.rollout_id for r in await store.current()] == ["ro_2"]


async def test_signals_add_up_across_concurrent_writers(stores: tuple[RolloutStore, LedgerStore]) -> None:
    store, _ = stores
    delta = SignalDelta(
        "ro_1", 0, "candidate", requests=3, errors=1, successes=2, cost_success=Decimal("0.000000000003"),
        cost_total=Decimal("0.1"), quality_n=2, quality_sum=1.5, quality_sumsq=1.25, dropped=1,
        histograms={"latency": {3: 2, 5: 1}, "ttft": {1: 1}},
    )  # fmt: skip
    await asyncio.gather(*(store.add_signals([delta]) for _ in range(5)))
    await store.add_signals([SignalDelta("ro_1", 0, "stable", requests=7)])
    windows = {w.arm: w for w in await store.windows("ro_1")}
    cand = windows["candidate"]
    assert (cand.requests, cand.errors, cand.successes, cand.quality_n, cand.dropped) == (15, 5, 10, 10, 5)
    assert cand.cost_success == Decimal("0.000000000015") and cand.cost_total == Decimal("0.5")
    assert cand.quality_sum == pytest.approx(7.5) and cand.quality_sumsq == pytest.approx(6.25)
    assert cand.histograms == {"latency": {3: 10, 5: 5}, "ttft": {1: 5}}
    assert windows["stable"].requests == 7 and windows["stable"].histograms == {}


async def test_requests_are_found_in_the_ledger_with_their_arm(stores: tuple[RolloutStore, LedgerStore]) -> None:
    store, ledger = stores
    tag = {"rollout": "ro_1", "rollout_arm": "candidate", "rollout_step": "2"}
    tagged = make_row(1, request_id="req_a", attempt_id="req_a:0", extra=tag)
    await ledger.write([tagged, make_row(2, request_id="req_b", attempt_id="req_b:0")])
    found = await store.find_request("req_a")
    assert found is not None and (found.rollout_id, found.arm, found.step) == ("ro_1", "candidate", 2)
    plain = await store.find_request("req_b")
    assert plain is not None and plain.rollout_id is None
    assert await store.find_request("req_missing") is None
    await store.add_feedback(Feedback("req_a", 0.25, "meh", 10.0, "ro_1", "candidate"))
    assert await store.feedback_for("ro_1") == [Feedback("req_a", 0.25, "meh", 10.0, "ro_1", "candidate")]


async def test_samples_are_kept_newest_first_and_pruned_by_count_and_age(
    stores: tuple[RolloutStore, LedgerStore],
) -> None:
    store, _ = stores
    for i in range(6):
        sample = SampleRecord(f"s{i}", "chat", 100.0 + i, f"req_{i}", "big", [{"role": "user", "content": f"q{i}"}],
                              f"a{i}", {"EMAIL": 1} if i == 0 else {})  # fmt: skip
        await store.add_sample(sample)
    await store.add_sample(SampleRecord("o1", "other", 100.0, "req_o", "x", [], "", {}))
    newest = await store.samples("chat", limit=2)
    assert [s.sample_id for s in newest] == ["s5", "s4"] and newest[0].messages == [{"role": "user", "content": "q5"}]
    assert await store.prune_samples("chat", keep=4, before=101.5) == 2  # s0, s1: too old (s0, s1 also beyond 4)
    assert [s.sample_id for s in await store.samples("chat", limit=10)] == ["s5", "s4", "s3", "s2"]
    assert await store.prune_samples("chat", keep=3, before=0.0) == 1
    assert [s.sample_id for s in await store.samples("other", limit=10)] == ["o1"]


def drift(run_id: str, at: float, *, group: str = "chat", member: bool = False, **changes: object) -> DriftRecord:
    base = DriftRecord(
        run_id=run_id, model_group=group, deployment="big", at=at, items=50, score=0.9, ci_low=0.82, ci_high=0.96,
        baseline=None, baseline_runs=0, baseline_from=None, baseline_to=None, in_baseline=member, drift_margin=0.05,
        drifted=False,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_drift_runs_are_kept_newest_first_and_pruning_spares_the_baseline_window(
    stores: tuple[RolloutStore, LedgerStore],
) -> None:
    store, _ = stores
    for i in range(2):
        await store.add_drift_run(drift(f"b{i}", 100.0 + i, member=True))
    await store.add_drift_run(drift("n0", 100.5, member=True, deployment="small"))  # another deployment's window
    low = drift("r0", 102.0, score=0.7, ci_low=0.6, ci_high=0.8, baseline=0.9, baseline_runs=2, baseline_from=100.0,
                baseline_to=101.0, drifted=True, judge_agreed=12, judge_disagreed=2, judge_unparseable=1,
                judge_failed=3, judge_spent_usd=Decimal("0.004217"))  # fmt: skip
    await store.add_drift_run(low)
    undecided = drift("i0", 101.5, score=None, judge_agreed=0, judge_disagreed=9, judge_unparseable=0, judge_failed=0,
                      judge_spent_usd=Decimal(0), inconclusive=True)  # fmt: skip
    await store.add_drift_run(undecided)  # a judged run too few of whose verdicts agreed
    for i in range(1, 4):
        await store.add_drift_run(drift(f"r{i}", 102.0 + i, score=None, ci_low=None, ci_high=None, items=0))
    await store.add_drift_run(drift("o0", 100.0, group="other"))
    newest = await store.drift_runs(model_group="chat", limit=2)
    assert [r.run_id for r in newest] == ["r3", "r2"] and newest[0].score is None and newest[0].ci_low is None
    assert (await store.drift_runs(model_group="chat", limit=10))[3] == low  # every field as written
    assert (await store.drift_runs(model_group="chat", limit=10))[4] == undecided
    assert [r.run_id for r in await store.drift_runs(limit=3)] == ["r3", "r2", "r1"]
    window = await store.drift_baseline("chat", "big", runs=5)
    assert [r.run_id for r in window] == ["b0", "b1"] and all(r.in_baseline for r in window)
    assert [r.run_id for r in await store.drift_baseline("chat", "big", runs=1)] == ["b0"]
    assert await store.prune_drift_runs("chat", keep=2, before=102.5) == 3  # i0, r0, r1; n0 is a baseline run too
    assert [r.run_id for r in await store.drift_runs(model_group="chat", limit=10)] == ["r3", "r2", "b1", "n0", "b0"]
    assert await store.prune_drift_runs("chat", keep=0, before=1e12) == 2
    assert [r.run_id for r in await store.drift_runs(model_group="chat", limit=10)] == ["b1", "n0", "b0"]
    assert [r.run_id for r in await store.drift_runs(model_group="other", limit=10)] == ["o0"]
