"""What a rollout should do next, from its record, its settings and its signal windows: a pure
function, so every replica reaches the same decision from the same data (and tests and the
benchmark call exactly what the gateway runs).

Canary: every signal with a margin is compared between the arms over all canary steps so far with
an always-valid one-sided test (margin.rollout.stats); the false-alarm rate is split evenly
between those signals (Bonferroni), so the chance that a candidate within every margin (an equal one
included) is ever rolled back, by any signal at any look, stays within `false_alarm_rate`. Rollback
and promotion test opposite hypotheses (worse than the margin, or not), so each uses the whole share.
- any signal `worse` (whole interval above its margin): roll back, at once;
- a step ends once both arms have its minimum of requests in it and its minimum time has passed;
  the last step (every step with `promote_requires: every`) also needs every signal `ok` (whole
  interval below its margin), otherwise it waits: an inconclusive step never promotes.
Paused rollouts never move forward, but a rollback still happens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from margin.config.rollout import RolloutSettings
from margin.rollout.arms import ArmTotals, totals
from margin.rollout.stats import ArmStats, SignalComparison, compare_arms, compare_to_floor
from margin.storage.rollouts import ArmWindow, HistogramMetric, RolloutRecord, RolloutState

Action = Literal["wait", "advance", "promote", "rollback"]
SIGNALS = ("error_rate", "quality", "latency", "ttft")
SHADOW_STEP = -1


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str
    to_state: RolloutState
    to_step: int
    snapshot: dict[str, object] = field(default_factory=dict)


def mixture_scale(margin: float) -> float:
    """tau of the one-sided normal mixture: the boundary reaches a verdict on the fewest requests when
    the candidate's excess over the margin is about tau (margin.rollout.stats), so tau is the margin
    itself: a candidate twice as bad as tolerated is the one caught fastest, and an excess from half
    to twice that costs at most ~8% more requests. The floor keeps a zero margin usable."""
    return max(margin, 0.005)


def compare_canary(stable: ArmTotals, candidate: ArmTotals, settings: RolloutSettings) -> list[SignalComparison]:
    deciding = [(name, m) for name in SIGNALS if (m := getattr(settings.margins, name)) is not None]
    alpha = settings.false_alarm_rate / max(1, len(deciding))
    out = []
    for name, margin in deciding:
        pair = _arm_stats(name, stable, candidate)
        if pair is None:
            continue
        higher_is_worse = name != "quality"
        out.append(
            compare_arms(
                name,
                *pair,
                higher_is_worse=higher_is_worse,
                margin=margin,
                alpha=alpha,
                tau=mixture_scale(margin),
                min_n=settings.min_requests,
            )
        )
    return out


def _arm_stats(name: str, stable: ArmTotals, candidate: ArmTotals) -> tuple[ArmStats, ArmStats] | None:
    if name == "error_rate":
        return _errors(stable), _errors(candidate)
    if name == "quality":
        if stable.quality_n == 0 and candidate.quality_n == 0:
            return None  # no grader, no feedback: the signal cannot speak
        return (
            ArmStats(stable.quality_n, stable.quality_sum, stable.quality_sumsq),
            ArmStats(candidate.quality_n, candidate.quality_sum, candidate.quality_sumsq),
        )
    metric: HistogramMetric = "latency" if name == "latency" else "ttft"
    threshold = stable.quantile_bucket(metric, 0.95)
    if threshold is None:
        return None
    # Share of requests slower than the stable arm's p95: about 5% on both arms when they are equal.
    return ArmStats.binary(*reversed(stable.above(metric, threshold))), ArmStats.binary(
        *reversed(candidate.above(metric, threshold))
    )


def decide(record: RolloutRecord, settings: RolloutSettings, windows: list[ArmWindow], now: float) -> Decision:
    if record.state == "gated":
        if settings.shadow.share > 0:
            return Decision("advance", "gated: shadow traffic starts", "shadow", SHADOW_STEP)
        return Decision("advance", "gated: the canary starts", "canary", 0)
    if record.state == "shadow":
        return _shadow(record, settings, windows, now)
    if record.state == "canary":
        return _canary(record, settings, windows, now)
    return Decision("wait", record.reason, record.state, record.step)


def _canary(record: RolloutRecord, settings: RolloutSettings, windows: list[ArmWindow], now: float) -> Decision:
    canary_steps = range(0, record.step + 1)
    stable, candidate = (
        totals(windows, arm="stable", steps=canary_steps),
        totals(windows, arm="candidate", steps=canary_steps),
    )
    comparisons = compare_canary(stable, candidate, settings)
    snapshot = _snapshot(record, comparisons, stable, candidate)
    worse = [c for c in comparisons if c.verdict == "worse"]
    if worse:
        return Decision("rollback", "; ".join(_worse_text(c) for c in worse), "rolled_back", record.step, snapshot)
    if record.paused:
        return Decision("wait", "paused by an operator", record.state, record.step, snapshot)
    waiting = _step_waits(record, settings, windows, now)
    if waiting:
        return Decision("wait", waiting, record.state, record.step, snapshot)
    last = record.step == len(settings.steps) - 1
    if last or settings.promote_requires == "every":
        unsure = [c for c in comparisons if c.verdict != "ok"]
        if unsure or not comparisons:
            why = ", ".join(f"{c.signal} {c.verdict}" for c in unsure) or "no signal has data"
            return Decision("wait", f"step {record.step + 1} inconclusive: {why}", record.state, record.step, snapshot)
    if last:
        return Decision("promote", "every signal within its margin", "promoted", record.step, snapshot)
    share = settings.steps[record.step + 1].share
    return Decision(
        "advance", f"step {record.step + 1} passed: {share:.0%} to the candidate", "canary", record.step + 1, snapshot
    )


def _step_waits(record: RolloutRecord, settings: RolloutSettings, windows: list[ArmWindow], now: float) -> str:
    """Why the current step cannot end yet ('' when it can)."""
    step = settings.steps[record.step]
    stable = totals(windows, arm="stable", steps=[record.step]).requests
    candidate = totals(windows, arm="candidate", steps=[record.step]).requests
    if min(stable, candidate) < step.min_requests:
        return (
            f"step {record.step + 1}: {candidate} candidate / {stable} stable requests of {step.min_requests} per arm"
        )
    waited = now - record.stage_started_at
    if waited < step.min_duration_s:
        return f"step {record.step + 1}: {waited:.0f} s of {step.min_duration_s:.0f} s"
    return ""


def _shadow(record: RolloutRecord, settings: RolloutSettings, windows: list[ArmWindow], now: float) -> Decision:
    shadow_settings = settings.shadow
    stable = totals(windows, arm="stable", steps=[SHADOW_STEP])
    shadow = totals(windows, arm="shadow", steps=[SHADOW_STEP])
    deciding = 1 + (settings.margins.error_rate is not None)
    alpha = settings.false_alarm_rate / deciding
    agreement = compare_to_floor(
        "shadow_agreement", ArmStats(shadow.quality_n, shadow.quality_sum, shadow.quality_sumsq),
        floor=shadow_settings.min_score, alpha=alpha, tau=0.1, min_n=shadow_settings.min_requests,
    )  # fmt: skip
    comparisons = [agreement]
    if settings.margins.error_rate is not None:
        margin = settings.margins.error_rate
        errors = compare_arms(
            "error_rate", _errors(stable), _errors(shadow),
            higher_is_worse=True, margin=margin, alpha=alpha, tau=mixture_scale(margin), min_n=settings.min_requests,
        )  # fmt: skip
        comparisons.append(errors)
    snapshot = _snapshot(record, comparisons, stable, shadow)
    worse = [c for c in comparisons if c.verdict == "worse"]
    if worse:
        return Decision(
            "rollback", "shadow: " + "; ".join(_worse_text(c) for c in worse), "rolled_back", record.step, snapshot
        )
    if record.paused:
        return Decision("wait", "paused by an operator", record.state, record.step, snapshot)
    waited = now - record.stage_started_at
    if waited < shadow_settings.min_duration_s:
        return Decision(
            "wait", f"shadow: {waited:.0f} s of {shadow_settings.min_duration_s:.0f} s", "shadow", SHADOW_STEP, snapshot
        )
    if agreement.verdict != "ok":
        why = f"shadow: agreement {agreement.verdict} ({shadow.quality_n} graded of {shadow_settings.min_requests})"
        return Decision("wait", why, "shadow", SHADOW_STEP, snapshot)
    return Decision("advance", "shadow answers agree with the stable ones: the canary starts", "canary", 0, snapshot)


def _errors(arm: ArmTotals) -> ArmStats:
    return ArmStats.binary(arm.requests, arm.errors)


def _worse_text(c: SignalComparison) -> str:
    return (
        f"{c.signal}: candidate worse by {c.worse_by:+.4f} (always-valid interval [{c.lower:+.4f}, {c.upper:+.4f}]) "
        f"beyond its margin {c.margin:g}"
    )


def _snapshot(
    record: RolloutRecord, comparisons: list[SignalComparison], stable: ArmTotals, candidate: ArmTotals
) -> dict[str, object]:
    return {
        "state": record.state,
        "step": record.step,
        "signals": [c.as_dict() for c in comparisons],
        "arms": {"stable": stable.summary(), "candidate": candidate.summary()},
    }
