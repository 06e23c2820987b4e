"""Rollouts as JSON for people and tools: `margin rollout status`, `/admin/rollouts`, and a verdict
shaped for Kubernetes rollout controllers (docs/rollouts.md, "Argo Rollouts and Flagger")."""

from __future__ import annotations

from typing import Any, Literal

from margin.budgets.alerts import iso
from margin.rollout.decide import Decision, decide
from margin.rollout.service import settings_of
from margin.storage.rollouts import ArmWindow, RolloutRecord, TransitionRecord

VerdictWord = Literal["pass", "fail", "inconclusive"]


def record_view(record: RolloutRecord) -> dict[str, Any]:
    settings = settings_of(record)
    share = 0.0
    if record.state == "canary":
        share = settings.steps[record.step].share
    elif record.state == "promoted":
        share = 1.0
    return {
        "rollout_id": record.rollout_id,
        "model_group": record.model_group,
        "stable": record.stable,
        "candidate": record.candidate,
        "state": record.state,
        "step": record.step + 1 if record.state == "canary" else None,  # 1-based, as people count
        "steps": len(settings.steps),
        "candidate_share": share,
        "paused": record.paused,
        "reason": record.reason,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "created_by": record.created_by,
        "version": record.version,
    }


def status_view(record: RolloutRecord, windows: list[ArmWindow], now: float) -> dict[str, Any]:
    """The record, and what the decider would do now and why (with every signal's interval)."""
    view = record_view(record)
    if record.terminal:
        return view
    decision = decide(record, settings_of(record), windows, now)
    view["next"] = {"action": decision.action, "reason": decision.reason}
    view["analysis"] = decision.snapshot
    return view


def transition_view(entry: TransitionRecord) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": iso(entry.at),
        "from": entry.from_state or None,
        "to": entry.to_state,
        "from_step": entry.from_step + 1 if entry.from_state == "canary" else None,
        "to_step": entry.to_step + 1 if entry.to_state == "canary" else None,
        "actor": entry.actor,
        "reason": entry.reason,
        "snapshot": entry.snapshot,
    }


def verdict_word(record: RolloutRecord, decision: Decision | None) -> VerdictWord:
    """fail: rolled back or aborted, or shown worse now; pass: promoted, or every signal shown
    within its margin; inconclusive otherwise (a controller should wait, not promote)."""
    if record.state in ("rolled_back", "aborted") or (decision is not None and decision.action == "rollback"):
        return "fail"
    if record.state == "promoted" or (decision is not None and decision.action == "promote"):
        return "pass"
    signals = _signals(decision)
    if signals and all(s.get("verdict") == "ok" for s in signals):
        return "pass"
    return "inconclusive"


def verdict_view(record: RolloutRecord, windows: list[ArmWindow], now: float) -> dict[str, Any]:
    """Argo Rollouts' web metric provider reads a field of this JSON (`jsonPath: "{$.verdict}"`,
    `successCondition: result == "pass"`, `failureCondition: result == "fail"`); Flagger's
    webhook only reads the status code, which the API sets from `verdict`."""
    decision = None if record.terminal else decide(record, settings_of(record), windows, now)
    word = verdict_word(record, decision)
    return {
        "verdict": word,
        "rollout_id": record.rollout_id,
        "model_group": record.model_group,
        "state": record.state,
        "reason": decision.reason if decision is not None else record.reason,
        "signals": _signals(decision),
    }


def _signals(decision: Decision | None) -> list[dict[str, Any]]:
    found = decision.snapshot.get("signals") if decision is not None else None
    return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []
