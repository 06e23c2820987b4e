"""Rollouts (docs/rollouts.md): a model group's `rollout:` settings (how a candidate deployment
replaces its stable one) and the gateway-wide `rollouts:` section (how often replicas read the
state, where alerts go). A rollout keeps the group's settings as they were when it started."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, model_validator

from margin.config.base import Strict
from margin.config.pii import SampleRedaction

StickySource = Literal["session", "user", "key"]
_STICKY_DEFAULT: tuple[StickySource, ...] = ("session", "user", "key")
GraderSpecText = str | dict[str, Any]  # a grader name or {type: NAME, ...options} (docs/evals.md)


class CanaryStep(Strict):
    """One canary step: the candidate's share of the group's traffic, held until both arms have
    `min_requests` in this step and `min_duration_s` has passed."""

    share: float = Field(gt=0, le=1, description="share of the group's requests sent to the candidate")
    min_requests: int = Field(200, ge=1, description="requests per arm in this step before it may end")
    min_duration_s: float = Field(300.0, ge=0, description="seconds the step lasts at least")


def _default_steps() -> list[CanaryStep]:
    return [CanaryStep(share=s) for s in (0.01, 0.05, 0.25, 0.5)]


class Margins(Strict):
    """How much worse than the stable arm the candidate may be, per signal (absolute, 0-1 scale).
    A signal left unset is reported but never decides."""

    error_rate: float | None = Field(0.01, ge=0, le=1, description="extra share of failed requests")
    quality: float | None = Field(0.02, ge=0, le=1, description="drop in mean online quality score")
    latency: float | None = Field(
        0.05, ge=0, le=1, description="extra share of requests slower than the stable arm's p95 latency"
    )
    ttft: float | None = Field(0.05, ge=0, le=1, description="extra share slower than the stable arm's p95 TTFT")


class ShadowSettings(Strict):
    """Mirror a share of the stable arm's requests to the candidate, off the client path, and grade
    each shadow answer against the stable one. `share: 0` skips the shadow stage."""

    share: float = Field(0.0, ge=0, le=1, description="share of the group's requests mirrored")
    min_requests: int = Field(100, ge=1, description="graded shadow answers before the stage may end")
    min_duration_s: float = Field(60.0, ge=0)
    min_score: float = Field(0.9, ge=0, le=1, description="the mean shadow grade must be shown above this")
    grader: GraderSpecText = Field("normalised", description="compares the shadow answer with the stable one")
    budget_usd: Decimal = Field(
        Decimal("1.00"), ge=0, description="the rollout's experiment budget for shadow and judge calls"
    )


class OnlineJudge(Strict):
    """A judge on a sample of live requests: a model group served through margin grades the answer
    against `rubric` (the evals judge grader: asked twice with the texts in swapped order, a verdict
    counts only when both orders agree). `scored`: a share of the canary's requests of both arms is
    judged, and the score is that arm's quality; shadow pairs are judged with the stable answer as the
    reference. `pairwise`: only shadow pairs (the candidate's answer against the stable one)."""

    model: str = Field(min_length=1, description="the judge: a configured model group (or alias), not this one")
    mode: Literal["scored", "pairwise"] = "scored"
    rubric: str = Field("Is the answer correct, complete and responsive to the question?", min_length=1)
    scale: int = Field(10, ge=1, le=100)
    pass_score: float = Field(0.7, ge=0, le=1, description="share of the scale at which an answer passes")
    max_tokens: int = Field(200, ge=1)
    params: dict[str, Any] = Field(default_factory=lambda: {"temperature": 0}, description="the judge's parameters")
    share: float = Field(0.05, ge=0, le=1, description="share of canary requests (and shadow pairs) judged")

    def grader_spec(self) -> dict[str, Any]:
        """The spec of the evals judge grader (docs/evals.md) this judge is."""
        return {"type": "judge", **self.model_dump(mode="json", exclude={"share"})}


class RolloutSettings(Strict):
    """A model group's `rollout:`: what a candidate goes through before it replaces the stable one."""

    eval_set: str | None = Field(None, description="the offline gate's eval set (a path or a shipped set's name)")
    shadow: ShadowSettings = Field(default_factory=ShadowSettings)
    steps: list[CanaryStep] = Field(default_factory=_default_steps, min_length=1)
    false_alarm_rate: float = Field(
        0.01, gt=0, lt=0.5, description="chance that an equal candidate is ever rolled back (all signals together)"
    )
    min_requests: int = Field(100, ge=10, description="requests per arm before any verdict, rollback included")
    margins: Margins = Field(default_factory=Margins)
    online_grader: GraderSpecText | None = Field(
        None, description="grades each arm's answers without a reference (json_valid, json_schema, regex, ...)"
    )
    grade_share: float = Field(1.0, ge=0, le=1, description="share of answers the online grader sees")
    judge: OnlineJudge | None = Field(None, description="a judge model group on a sample of requests")
    promote_requires: Literal["last", "every"] = Field(
        "last", description="steps that need every signal shown within its margin to end (others: no harm shown)"
    )

    @model_validator(mode="after")
    def _growing_steps(self) -> RolloutSettings:
        shares = [s.share for s in self.steps]
        if shares != sorted(shares) or len(set(shares)) != len(shares):
            raise ValueError("rollout.steps: shares must grow from step to step")
        return self


def check_judge(
    group: str, aliases: Sequence[str], rollout: RolloutSettings | None, names: set[str],
    sample: ProductionSample | None = None,
) -> None:  # fmt: skip
    """A rollout's online judge, and the drift re-evaluation's, is another model group (or alias)
    served by this gateway."""
    judge = rollout.judge if rollout is not None else None
    if sample is not None and is_judge_spec(sample.reeval_grader):
        spec = drift_judge_spec(sample, judge)
        where = f"models[{group}].sample.reeval_grader"
        if spec.get("model") is None:
            raise ValueError(f"{where}: a judge needs a model: set models[{group}].rollout.judge, or a `model` here")
        if spec.get("mode") == "pairwise":
            raise ValueError(f"{where}.mode: the drift judge scores each answer against the rubric (mode: scored)")
        _check_judge_model(f"{where}.model", str(spec["model"]), (group, *aliases), names, "answers")
    if judge is not None:
        _check_judge_model(f"models[{group}].rollout.judge.model", judge.model, (group, *aliases), names, "rollout")


def is_judge_spec(spec: GraderSpecText) -> bool:
    return spec == "judge" or (isinstance(spec, dict) and spec.get("type") == "judge")


def drift_judge_spec(sample: ProductionSample, judge: OnlineJudge | None) -> dict[str, Any]:
    """The drift re-evaluation's judge grader spec: the group's judge (`rollout.judge`, its mode
    aside: drift is scored against the rubric), overridden field by field by a `reeval_grader` of
    `{type: judge, ...}`."""
    base = judge.grader_spec() if judge is not None else {"type": "judge"}
    own = sample.reeval_grader if isinstance(sample.reeval_grader, dict) else {}
    return {**base, "mode": "scored", **own}


def _check_judge_model(where: str, model: str, own: Sequence[str], names: set[str], what: str) -> None:
    if model not in names:
        known = ", ".join(sorted(names)) or "none"
        raise ValueError(f"{where}: unknown model group {model!r} (configured groups and aliases: {known})")
    if model in own:
        raise ValueError(f"{where}: a group cannot judge its own {what}; name another model group")


class ProductionSample(Strict):
    """A model group's `sample:`: a share of its live requests (a streamed one once it ended whole),
    with their answers, kept as a rolling eval set after PII redaction (docs/evals.md, "Production
    samples")."""

    share: float = Field(0.01, gt=0, le=1, description="share of the group's requests kept")
    max_items: int = Field(5000, ge=1, le=10_000_000, description="the newest this many are kept")
    retention_days: float = Field(30.0, gt=0, description="older samples are deleted")
    reeval_every_s: float | None = Field(
        None, ge=60, description="re-ask the stable deployment the newest samples this often (unset: never)"
    )
    reeval_items: int = Field(50, ge=1, le=10_000, description="samples per re-evaluation (newest first)")
    reeval_grader: GraderSpecText = Field(
        "normalised",
        description="grades each new answer against the stored one; `judge`: the group's judge (rollout.judge) "
        "scores each new answer against its rubric",
    )
    reeval_min_verdicts: int = Field(
        10, ge=1, description="a judged run with fewer agreed verdicts is inconclusive (recorded, never alerted)"
    )
    judge_budget_usd: Decimal = Field(
        Decimal("0.50"), ge=0, description="the drift judge's spend per re-evaluation; past it, answers go unjudged"
    )
    drift_margin: float = Field(0.05, gt=0, le=1, description="alert when a run scores this far below the baseline")
    baseline_runs: int = Field(3, ge=1, le=100, description="the first runs, averaged, are the baseline")
    history_runs: int = Field(
        1000, ge=1, le=1_000_000, description="re-evaluations kept in the drift history (newest; the baseline's always)"
    )
    history_days: float = Field(365.0, gt=0, description="older re-evaluations are deleted (the baseline's never)")
    redact: SampleRedaction = Field(
        default_factory=SampleRedaction, description="names and addresses too (the `pii` extra), beyond the patterns"
    )

    @model_validator(mode="after")
    def _reachable_verdicts(self) -> ProductionSample:
        if is_judge_spec(self.reeval_grader) and self.reeval_min_verdicts > self.reeval_items:
            raise ValueError(
                f"sample.reeval_min_verdicts: {self.reeval_min_verdicts} agreed verdicts can never come from "
                f"reeval_items: {self.reeval_items} samples (every judged run would be inconclusive)"
            )
        return self


class RolloutsConfig(Strict):
    """Gateway-wide rollout machinery."""

    refresh_s: float = Field(2.0, gt=0, le=300, description="how often each replica reads rollout state")
    decide_every_s: float = Field(5.0, gt=0, le=3600, description="how often a replica evaluates live rollouts")
    flush_every_s: float = Field(1.0, gt=0, le=60, description="how often a replica adds its signals to the store")
    sticky_by: list[StickySource] = Field(
        default_factory=lambda: list(_STICKY_DEFAULT),
        description="what keeps one client on one arm, first present wins (session: the x-margin-session header); "
        "a request with none of them is split on its own",
    )
    shadow_queue: int = Field(
        1000, ge=1, description="shadow calls waiting (per replica); when full, dropped and counted"
    )
    shadow_concurrency: int = Field(4, ge=1, le=256, description="shadow calls in flight at once (per replica)")
    grading_queue: int = Field(1000, ge=1, description="answers waiting for the online grader (per replica)")
    judge_queue: int = Field(
        200, ge=1, description="answers waiting for the online judge (per replica); when full, dropped and counted"
    )
    judge_concurrency: int = Field(2, ge=1, le=64, description="judged answers in flight at once (per replica)")
    answer_max_chars: int = Field(
        65_536, ge=1, description="a streamed answer longer than this is not graded, shadowed or judged (counted)"
    )
    alert_webhook: str | None = Field(None, description="POSTed a JSON body on every rollout transition")
    alert_timeout_s: float = Field(5.0, gt=0, le=60)
