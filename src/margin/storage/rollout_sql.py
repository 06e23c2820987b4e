"""SQL of the rollout store, shared by SQLite and PostgreSQL: statements written once with `?`
placeholders (PostgreSQL's `%s` substituted) and records <-> column values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from margin.storage.ledger_schema import money_text
from margin.storage.rollouts import (
    ArmWindow,
    DriftRecord,
    Feedback,
    HistogramMetric,
    RequestTag,
    RolloutRecord,
    SampleRecord,
    SignalDelta,
    TransitionRecord,
)

ROLLOUT_COLUMNS = (
    "rollout_id, model_group, stable, candidate, state, step, paused, plan, created_at, updated_at, "
    "stage_started_at, version, created_by, reason"
)
TRANSITION_COLUMNS = "rollout_id, seq, at, from_state, to_state, from_step, to_step, actor, reason, snapshot"
SIGNAL_COLUMNS = (
    "rollout_id, step, arm, requests, errors, successes, cost_success, cost_total, quality_n, quality_sum, "
    "quality_sumsq, dropped"
)
FEEDBACK_COLUMNS = "request_id, at, score, comment, rollout_id, arm"
SAMPLE_COLUMNS = "sample_id, model_group, at, request_id, deployment, messages, answer, redactions"
_MONEY = ("cost_success", "cost_total")
_Histograms = dict[tuple[int, str], dict[HistogramMetric, dict[int, int]]]  # (step, arm) -> metric -> bucket
_LIVE = "state NOT IN ('promoted', 'rolled_back', 'aborted')"


@dataclass(frozen=True, slots=True)
class RolloutSql:
    """The statements, for one driver's placeholder and exact money addition."""

    param: str  # "?" or "%s"
    money_add: str  # "dec_add({a}, {b})" (SQLite, exact on text) or "{a} + {b}" (NUMERIC)

    def _p(self, sql: str) -> str:
        return sql.replace("?", self.param)

    @property
    def insert_rollout(self) -> str:
        return self._p(f"INSERT INTO rollouts ({ROLLOUT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

    @property
    def insert_transition(self) -> str:
        return self._p(f"INSERT INTO rollout_transitions ({TRANSITION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")

    @property
    def update_rollout(self) -> str:
        return self._p(
            "UPDATE rollouts SET state = ?, step = ?, paused = ?, plan = ?, updated_at = ?, stage_started_at = ?, "
            "version = ?, reason = ? WHERE rollout_id = ? AND version = ?"
        )

    @property
    def select_one(self) -> str:
        return self._p(f"SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE rollout_id = ?")

    @property
    def select_current(self) -> str:
        return (
            f"SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE {_LIVE} "
            f"UNION ALL SELECT {ROLLOUT_COLUMNS} FROM rollouts r WHERE state = 'promoted' AND updated_at = "
            "(SELECT MAX(updated_at) FROM rollouts p WHERE p.model_group = r.model_group AND p.state = 'promoted')"
        )

    def select_list(self, *, by_group: bool) -> str:
        where = "WHERE model_group = ? " if by_group else ""
        return self._p(f"SELECT {ROLLOUT_COLUMNS} FROM rollouts {where}ORDER BY created_at DESC, rollout_id LIMIT ?")

    @property
    def select_history(self) -> str:
        return self._p(f"SELECT {TRANSITION_COLUMNS} FROM rollout_transitions WHERE rollout_id = ? ORDER BY seq")

    @property
    def upsert_signals(self) -> str:
        money = {c: self.money_add.format(a=f"rollout_signals.{c}", b=f"excluded.{c}") for c in _MONEY}
        added = ", ".join(
            f"{c} = rollout_signals.{c} + excluded.{c}"
            for c in ("requests", "errors", "successes", "quality_n", "quality_sum", "quality_sumsq", "dropped")
        )
        return self._p(
            f"INSERT INTO rollout_signals ({SIGNAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"ON CONFLICT (rollout_id, step, arm) DO UPDATE SET {added}, "
            f"cost_success = {money['cost_success']}, cost_total = {money['cost_total']}"
        )

    @property
    def upsert_histogram(self) -> str:
        return self._p(
            "INSERT INTO rollout_histograms (rollout_id, step, arm, metric, bucket, count) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (rollout_id, step, arm, metric, bucket) DO UPDATE SET count = rollout_histograms.count + "
            "excluded.count"
        )

    @property
    def select_signals(self) -> str:
        return self._p(f"SELECT {SIGNAL_COLUMNS} FROM rollout_signals WHERE rollout_id = ? ORDER BY step, arm")

    @property
    def select_histograms(self) -> str:
        return self._p("SELECT step, arm, metric, bucket, count FROM rollout_histograms WHERE rollout_id = ?")

    @property
    def find_request(self) -> str:
        # The answering row carries the request's rollout tag; any row proves the request exists.
        return self._p(
            "SELECT extra FROM ledger_attempts WHERE request_id = ? ORDER BY is_final DESC, attempt_index DESC LIMIT 1"
        )

    @property
    def insert_feedback(self) -> str:
        return self._p(f"INSERT INTO rollout_feedback ({FEEDBACK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)")

    @property
    def insert_sample(self) -> str:
        return self._p(f"INSERT INTO eval_samples ({SAMPLE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")

    @property
    def prune_samples(self) -> str:
        return self._p(
            "DELETE FROM eval_samples WHERE model_group = ? AND (at < ? OR sample_id NOT IN "
            "(SELECT sample_id FROM eval_samples WHERE model_group = ? ORDER BY at DESC LIMIT ?))"
        )

    @property
    def select_samples(self) -> str:
        return self._p(f"SELECT {SAMPLE_COLUMNS} FROM eval_samples WHERE model_group = ? ORDER BY at DESC LIMIT ?")

    @property
    def select_feedback(self) -> str:
        return self._p(f"SELECT {FEEDBACK_COLUMNS} FROM rollout_feedback WHERE rollout_id = ? ORDER BY at")


def rollout_values(record: RolloutRecord, *, boolean: type[int] | type[bool] = int) -> tuple[Any, ...]:
    r = record
    return (
        r.rollout_id, r.model_group, r.stable, r.candidate, r.state, r.step, boolean(r.paused), _json(r.plan),
        r.created_at, r.updated_at, r.stage_started_at, r.version, r.created_by, r.reason,
    )  # fmt: skip


def update_values(
    record: RolloutRecord, expected_version: int, *, boolean: type[int] | type[bool] = int
) -> tuple[Any, ...]:
    r = record
    return (
        r.state, r.step, boolean(r.paused), _json(r.plan), r.updated_at, r.stage_started_at, r.version, r.reason,
        r.rollout_id, expected_version,
    )  # fmt: skip


def rollout_from(values: Sequence[Any]) -> RolloutRecord:
    (rid, group, stable, candidate, state, step, paused, plan, created, updated, stage, version, by, reason) = values
    return RolloutRecord(
        rollout_id=str(rid), model_group=str(group), stable=str(stable), candidate=str(candidate),
        state=state, step=int(step), paused=bool(paused), plan=json.loads(plan), created_at=float(created),
        updated_at=float(updated), stage_started_at=float(stage), version=int(version), created_by=str(by),
        reason=str(reason),
    )  # fmt: skip


def transition_values(entry: TransitionRecord) -> tuple[Any, ...]:
    e = entry
    return (e.rollout_id, e.seq, e.at, e.from_state, e.to_state, e.from_step, e.to_step, e.actor, e.reason,
            _json(e.snapshot))  # fmt: skip


def transition_from(values: Sequence[Any]) -> TransitionRecord:
    rid, seq, at, from_state, to_state, from_step, to_step, actor, reason, snapshot = values
    return TransitionRecord(
        rollout_id=str(rid), seq=int(seq), at=float(at), from_state=str(from_state), to_state=str(to_state),
        from_step=int(from_step), to_step=int(to_step), actor=str(actor), reason=str(reason),
        snapshot=json.loads(snapshot),
    )  # fmt: skip


def signal_values(delta: SignalDelta, *, money: type[str] | type[Decimal] = str) -> tuple[Any, ...]:
    d = delta
    cost_success, cost_total = (money_text(d.cost_success), money_text(d.cost_total))
    return (
        d.rollout_id, d.step, d.arm, d.requests, d.errors, d.successes,
        cost_success if money is str else Decimal(cost_success), cost_total if money is str else Decimal(cost_total),
        d.quality_n, d.quality_sum, d.quality_sumsq, d.dropped,
    )  # fmt: skip


def histogram_values(delta: SignalDelta) -> list[tuple[Any, ...]]:
    """One upsert per (metric, bucket), in key order so replicas lock cells in the same order."""
    return [
        (delta.rollout_id, delta.step, delta.arm, metric, bucket, count)
        for metric, buckets in sorted(delta.histograms.items())
        for bucket, count in sorted(buckets.items())
        if count
    ]


def windows_from(signals: Sequence[Sequence[Any]], histograms: Sequence[Sequence[Any]]) -> list[ArmWindow]:
    by_arm: _Histograms = {}
    for step, arm, metric, bucket, count in histograms:
        cells = by_arm.setdefault((int(step), str(arm)), {})
        cells.setdefault(cast(HistogramMetric, metric), {})[int(bucket)] = int(count)
    return [_window(values, by_arm) for values in signals]


def _window(
    values: Sequence[Any], histograms: dict[tuple[int, str], dict[HistogramMetric, dict[int, int]]]
) -> ArmWindow:
    rid, step, arm, requests, errors, successes, cost_s, cost_t, q_n, q_sum, q_sumsq, dropped = values
    return ArmWindow(
        rollout_id=str(rid), step=int(step), arm=arm, requests=int(requests), errors=int(errors),
        successes=int(successes), cost_success=Decimal(str(cost_s)), cost_total=Decimal(str(cost_t)),
        quality_n=int(q_n), quality_sum=float(q_sum), quality_sumsq=float(q_sumsq), dropped=int(dropped),
        histograms=histograms.get((int(step), str(arm)), {}),
    )  # fmt: skip


def request_tag(request_id: str, extra: str | None) -> RequestTag:
    fields = json.loads(extra) if extra else {}
    step = fields.get("rollout_step")
    return RequestTag(request_id, fields.get("rollout"), fields.get("rollout_arm"), int(step) if step else None)


def feedback_values(feedback: Feedback) -> tuple[Any, ...]:
    f = feedback
    return (f.request_id, f.at, f.score, f.comment, f.rollout_id, f.arm)


def feedback_from(values: Sequence[Any]) -> Feedback:
    request_id, at, score, comment, rollout_id, arm = values
    return Feedback(str(request_id), float(score), str(comment), float(at), rollout_id, arm)


def sample_values(sample: SampleRecord) -> tuple[Any, ...]:
    s = sample
    return (s.sample_id, s.model_group, s.at, s.request_id, s.deployment, _json(s.messages), s.answer,
            _json(s.redactions))  # fmt: skip


def sample_from(values: Sequence[Any]) -> SampleRecord:
    sample_id, group, at, request_id, deployment, messages, answer, redactions = values
    return SampleRecord(str(sample_id), str(group), float(at), str(request_id), str(deployment), json.loads(messages),
                        str(answer), json.loads(redactions))  # fmt: skip


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


DRIFT_COLUMNS = (
    "run_id, model_group, deployment, at, items, score, ci_low, ci_high, baseline, baseline_runs, baseline_from, "
    "baseline_to, in_baseline, drift_margin, drifted, judge_agreed, judge_disagreed, judge_unparseable, judge_failed, "
    "judge_spent_usd, inconclusive"
)


@dataclass(frozen=True, slots=True)
class DriftSql:
    param: str  # "?" or "%s"

    def _p(self, sql: str) -> str:
        return sql.replace("?", self.param)

    @property
    def insert(self) -> str:
        return self._p(f"INSERT INTO drift_runs ({DRIFT_COLUMNS}) VALUES ({', '.join('?' * 21)})")

    def select_recent(self, *, by_group: bool) -> str:
        where = "WHERE model_group = ? " if by_group else ""
        return self._p(f"SELECT {DRIFT_COLUMNS} FROM drift_runs {where}ORDER BY at DESC, run_id DESC LIMIT ?")

    @property
    def select_baseline(self) -> str:
        return self._p(
            f"SELECT {DRIFT_COLUMNS} FROM drift_runs WHERE model_group = ? AND deployment = ? AND in_baseline = ? "
            "ORDER BY at, run_id LIMIT ?"
        )

    @property
    def prune(self) -> str:
        """Parameters: group, False (not a baseline run), before, group, keep."""
        return self._p(
            "DELETE FROM drift_runs WHERE model_group = ? AND in_baseline = ? AND (at < ? OR run_id NOT IN "
            "(SELECT run_id FROM drift_runs WHERE model_group = ? ORDER BY at DESC, run_id DESC LIMIT ?))"
        )


def drift_values(
    run: DriftRecord, *, boolean: type[int] | type[bool] = int, money: type[str] | type[Decimal] = str
) -> tuple[Any, ...]:
    r = run
    spent = None if r.judge_spent_usd is None else money_text(r.judge_spent_usd)
    return (
        r.run_id, r.model_group, r.deployment, r.at, r.items, r.score, r.ci_low, r.ci_high, r.baseline,
        r.baseline_runs, r.baseline_from, r.baseline_to, boolean(r.in_baseline), r.drift_margin, boolean(r.drifted),
        r.judge_agreed, r.judge_disagreed, r.judge_unparseable, r.judge_failed,
        spent if spent is None or money is str else Decimal(spent), boolean(r.inconclusive),
    )  # fmt: skip


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def drift_from(values: Sequence[Any]) -> DriftRecord:
    head, judged = values[:15], values[15:]
    run_id, group, deployment, at, items, score, low, high, baseline, n, since, until, member, margin, drifted = head
    agreed, disagreed, unparseable, failed, spent, inconclusive = judged
    return DriftRecord(
        run_id=str(run_id), model_group=str(group), deployment=str(deployment), at=float(at), items=int(items),
        score=_opt(score), ci_low=_opt(low), ci_high=_opt(high), baseline=_opt(baseline), baseline_runs=int(n),
        baseline_from=_opt(since), baseline_to=_opt(until), in_baseline=bool(member), drift_margin=float(margin),
        drifted=bool(drifted), judge_agreed=_count(agreed), judge_disagreed=_count(disagreed),
        judge_unparseable=_count(unparseable), judge_failed=_count(failed),
        judge_spent_usd=None if spent is None else Decimal(str(spent)), inconclusive=bool(inconclusive),
    )  # fmt: skip


def _count(value: Any) -> int | None:
    return None if value is None else int(value)
