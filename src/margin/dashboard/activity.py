"""Rollouts, evals and batches: the state and figures of each, read from their own stores (never
the ledger): the latest rollouts (state, canary step, paused, why), the latest drift re-evaluations
(score with its 95% interval against the baseline, whether the alert fired) and the latest batches
(status, lines done and failed, tokens, exact cost). A team's viewer sees its own keys' batches
only: rollouts and evals are per model group, every team mixed."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from margin.dashboard.explorer import Scope
from margin.dashboard.query import check_params
from margin.dashboard.tables import Cell, money, page_figures, table
from margin.storage.batches import BatchRecord, BatchStore
from margin.storage.rollouts import DriftRecord, RolloutRecord, RolloutStore

LATEST = 50
ROLLOUT_COLUMNS = ("rollout_id", "model_group", "stable", "candidate", "state", "step", "paused", "updated", "reason")
DRIFT_COLUMNS = ("at", "model_group", "deployment", "items", "score", "ci_low", "ci_high", "baseline", "drifted")
BATCH_COLUMNS = ("batch_id", "owner", "status", "created", "total", "completed", "failed", "input_tokens",
                 "output_tokens", "cost_usd")  # fmt: skip


def _when(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _score(value: float | None) -> str | None:
    return None if value is None else f"{value:.4f}"


async def build_activity(
    rollouts: RolloutStore | None, batches: BatchStore | None, query: Mapping[str, str], scope: Scope
) -> dict[str, Any]:
    check_params(query, ())
    tables: dict[str, dict[str, Any]] = {}
    summary: dict[str, Cell] = {}
    if rollouts is not None and not scope.viewer:
        recent = await rollouts.recent(limit=LATEST)
        runs = await rollouts.drift_runs(limit=LATEST)
        tables["rollouts"] = table("Rollouts (latest first)", ROLLOUT_COLUMNS, [_rollout(r) for r in recent])
        tables["evals"] = table("Drift re-evaluations (latest first)", DRIFT_COLUMNS, [_drift(r) for r in runs])
        summary["active_rollouts"] = sum(1 for r in recent if not r.terminal)
        summary["drift_alerts"] = sum(1 for r in runs if r.drifted)
    if batches is not None:
        listed = (await batches.list_batches(None, after=None, limit=LATEST)).items
        mine = [b for b in listed if not scope.viewer or b.owner in scope.team_keys]
        tables["batches"] = table("Batches (latest first)", BATCH_COLUMNS, [_batch(b) for b in mine])
        summary["batches_running"] = sum(1 for b in mine if not b.is_final)
    return page_figures(
        "rollouts", scope.team, summary=summary, tables=tables,
        notes=[f"The latest {LATEST} of each, from their own stores."],
    )  # fmt: skip


def _rollout(r: RolloutRecord) -> list[Cell]:
    return [r.rollout_id, r.model_group, r.stable, r.candidate, r.state, r.step, "yes" if r.paused else "no",
            _when(r.updated_at), r.reason]  # fmt: skip


def _drift(r: DriftRecord) -> list[Cell]:
    return [_when(r.at), r.model_group, r.deployment, r.items, _score(r.score), _score(r.ci_low), _score(r.ci_high),
            _score(r.baseline), "yes" if r.drifted else "inconclusive" if r.inconclusive else ""]  # fmt: skip


def _batch(b: BatchRecord) -> list[Cell]:
    return [b.batch_id, b.owner, b.status, _when(b.created_at), b.total, b.completed, b.failed, b.input_tokens,
            b.output_tokens, money(b.cost)]  # fmt: skip
