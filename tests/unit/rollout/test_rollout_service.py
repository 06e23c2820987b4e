"""The state machine through the service (a real SQLite store), and decide() on hand-made windows."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from margin.config import parse_config
from margin.config.rollout import CanaryStep, RolloutSettings
from margin.rollout.decide import decide
from margin.rollout.errors import RolloutConflict, RolloutNotFound, UnknownRolloutTarget
from margin.rollout.service import RolloutService
from margin.storage.rollout_stores import open_rollout_store
from margin.storage.rollouts import Arm, ArmWindow, RolloutRecord

CONFIG = """
deployments:
  - {name: big, provider: fake, model: big}
  - {name: small, provider: fake, model: small}
  - {name: other, provider: fake, model: other}
models:
  - {name: chat, deployments: [big, other], rollout: {steps: [{share: 0.1}, {share: 0.5}]}}
"""


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[RolloutService]:
    store = open_rollout_store(f"sqlite:///{tmp_path}/m.db", tmp_path)
    await store.migrate()
    yield RolloutService(store, parse_config(CONFIG))
    await store.close()


async def test_targets_are_checked_before_anything_is_written(service: RolloutService) -> None:
    with pytest.raises(UnknownRolloutTarget, match="unknown model group 'nope'"):
        await service.start("nope", "small", actor="t")
    with pytest.raises(UnknownRolloutTarget, match="unknown deployment 'ghost'"):
        await service.start("chat", "ghost", actor="t")
    with pytest.raises(UnknownRolloutTarget, match="has no deployment 'small' to replace"):
        await service.start("chat", "other", stable="small", actor="t")
    with pytest.raises(UnknownRolloutTarget, match="already the stable"):
        await service.start("chat", "big", actor="t")
    assert await service.store.recent() == []


async def test_the_path_to_promoted_and_what_it_refuses(service: RolloutService) -> None:
    record = await service.start("chat", "small", actor="t")
    with pytest.raises(RolloutConflict, match="already has a rollout in progress"):
        await service.start("chat", "small", stable="other", actor="t")
    with pytest.raises(RolloutConflict, match="pending: it cannot move to canary"):
        await service.move(record, "canary", 0, actor="t", reason="skip the gate")
    states = [(r.state, r.step) for r in [await service.promote("chat", actor="t") for _ in range(4)]]
    assert states == [("gated", -1), ("canary", 0), ("canary", 1), ("promoted", 1)]
    with pytest.raises(RolloutConflict, match="has ended"):
        await service.abort("chat", actor="t")
    _, history = await service.history(record.rollout_id)
    assert [e.seq for e in history] == [0, 1, 2, 3, 4] and all(e.actor == "t" for e in history)
    with pytest.raises(RolloutNotFound):
        await service.find("ro_missing")


async def test_a_stale_record_loses_the_compare_and_set(service: RolloutService) -> None:
    record = await service.start("chat", "small", actor="t")
    await service.pause(record.rollout_id, actor="t")
    assert await service.move(record, "aborted", -1, actor="late", reason="stale") is None


def window(step: int, arm: Arm, n: int, errors: int = 0, good: float | None = None) -> ArmWindow:
    quality = float(n - errors) if good is None else good
    return ArmWindow("r", step, arm, n, errors, n - errors, Decimal(0), Decimal(0), n - errors, quality, quality, 0)


def canary(step: int = 0, *, paused: bool = False, started: float = 0.0) -> RolloutRecord:
    return RolloutRecord("r", "chat", "big", "small", "canary", step, paused, {}, 0.0, 0.0, started, 1, "t", "")


SETTINGS = RolloutSettings(
    steps=[
        CanaryStep(share=0.1, min_requests=50, min_duration_s=10),
        CanaryStep(share=0.5, min_requests=50, min_duration_s=0),
    ],
    min_requests=50,
)


def test_decide_rolls_back_a_worse_candidate_even_when_paused() -> None:
    windows = [window(0, "stable", 2000), window(0, "candidate", 400, good=240.0)]  # quality 1.0 vs 0.6
    decision = decide(canary(paused=True), SETTINGS, windows, now=5.0)
    assert decision.action == "rollback" and decision.reason.startswith("quality: candidate worse by")


def test_decide_waits_for_minimums_then_advances_and_promotes_only_when_shown_within_margins() -> None:
    few = [window(0, "stable", 400), window(0, "candidate", 20)]
    assert "20 candidate / 400 stable requests of 50" in decide(canary(), SETTINGS, few, now=100).reason
    enough = [window(0, "stable", 900), window(0, "candidate", 100)]
    assert "10 s" in decide(canary(), SETTINGS, enough, now=5.0).reason  # min duration
    assert decide(canary(), SETTINGS, enough, now=20.0).action == "advance"
    assert decide(canary(paused=True), SETTINGS, enough, now=20.0).reason == "paused by an operator"
    last = [*enough, window(1, "stable", 400), window(1, "candidate", 400)]
    assert decide(canary(1), SETTINGS, last, now=20.0).action == "promote"  # error-free, all-pass arms
    noisy = [window(0, "stable", 900, errors=45), window(0, "candidate", 100, errors=6),
             window(1, "stable", 60, errors=3), window(1, "candidate", 60, errors=3)]  # fmt: skip
    waiting = decide(canary(1), SETTINGS, noisy, now=20.0)
    assert waiting.action == "wait" and "inconclusive" in waiting.reason and "error_rate" in waiting.reason


def test_decide_moves_gated_to_shadow_or_canary() -> None:
    gated = dataclasses.replace(canary(), state="gated", step=-1)
    assert (decide(gated, SETTINGS, [], 0).to_state, decide(gated, SETTINGS, [], 0).to_step) == ("canary", 0)
    with_shadow = SETTINGS.model_copy(update={"shadow": SETTINGS.shadow.model_copy(update={"share": 0.2})})
    assert decide(gated, with_shadow, [], 0).to_state == "shadow"


async def test_an_unknown_online_grader_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from margin.rollout.errors import RolloutError

    store = open_rollout_store(f"sqlite:///{tmp_path}/m.db", tmp_path)
    await store.migrate()
    bad = CONFIG.replace("rollout: {steps:", "rollout: {online_grader: no_such_grader, steps:")
    with pytest.raises(RolloutError, match=r"rollout.online_grader: unknown grader 'no_such_grader'"):
        await RolloutService(store, parse_config(bad)).start("chat", "small", actor="t")
    assert await store.recent() == []
    await store.close()
