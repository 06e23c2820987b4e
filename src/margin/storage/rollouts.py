"""Rollout state as the database keeps it: rollouts, their audited transitions, per-arm signal
windows and client feedback (docs/rollouts.md). SQLite for one process, PostgreSQL shared by
replicas; both behind `RolloutStore`.

Replicas never coordinate in memory: every change to a rollout is a compare-and-set on its
`version`, so two replicas deciding at once apply one transition and the other sees it was beaten.
Signals are added (never overwritten), so every replica's share of the traffic counts once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

from margin.storage.protocols import StorageError

RolloutState = Literal["pending", "gated", "shadow", "canary", "promoted", "rolled_back", "aborted"]
TERMINAL_STATES: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted"})
Arm = Literal["stable", "candidate", "shadow", "judge"]  # judge: the online judge's own calls (their cost)
# latency, ttft: milliseconds in 10% buckets (margin.rollout.arms); judge: outcomes of the online
# judge on the arm's answers, counted by code (margin.rollout.arms.JUDGE_OUTCOMES)
HistogramMetric = Literal["latency", "ttft", "judge"]


class DuplicateRollout(StorageError):
    """The model group already has a rollout that has not ended."""


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    rollout_id: str
    model_group: str
    stable: str  # the deployment being replaced
    candidate: str  # the deployment replacing it
    state: RolloutState
    step: int  # index of the canary step; -1 before the canary
    paused: bool  # an operator froze it: no automatic step forward (rollback still watches)
    plan: dict[str, Any]  # the settings it runs under, fixed when it started (JSON)
    created_at: float
    updated_at: float
    stage_started_at: float  # when the current state (or canary step) began
    version: int  # bumped by every change: the compare-and-set key
    created_by: str
    reason: str  # why it is in its current state (the last transition's reason)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One audited change: who or what, why, and the metrics it was decided on."""

    rollout_id: str
    seq: int  # 0 for the creation, then 1, 2 ... (the rollout's version after the change)
    at: float
    from_state: str  # "" for the creation
    to_state: str
    from_step: int
    to_step: int
    actor: str  # "cli:alice", "admin-api", "auto:decider@host-1234"
    reason: str
    snapshot: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SignalDelta:
    """What one replica saw of one arm during one step since its last flush (added, never set)."""

    rollout_id: str
    step: int  # -1: the shadow stage
    arm: Arm
    requests: int = 0
    errors: int = 0
    successes: int = 0
    cost_success: Decimal = Decimal(0)  # spend of the successful requests
    cost_total: Decimal = Decimal(0)  # every request's spend (a shadow arm's experiment budget)
    quality_n: int = 0
    quality_sum: float = 0.0
    quality_sumsq: float = 0.0
    dropped: int = 0  # shadow calls dropped because the queue was full (or the budget spent)
    histograms: dict[HistogramMetric, dict[int, int]] = field(default_factory=dict)  # bucket -> count


@dataclass(frozen=True, slots=True)
class ArmWindow:
    """Totals of one arm during one step, every replica's deltas added."""

    rollout_id: str
    step: int
    arm: Arm
    requests: int
    errors: int
    successes: int
    cost_success: Decimal
    cost_total: Decimal
    quality_n: int
    quality_sum: float
    quality_sumsq: float
    dropped: int
    histograms: dict[HistogramMetric, dict[int, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestTag:
    """What the ledger knows of a request: that it exists, and the rollout arm that answered it."""

    request_id: str
    rollout_id: str | None
    arm: str | None
    step: int | None


@dataclass(frozen=True, slots=True)
class Feedback:
    request_id: str
    score: float  # 0..1
    comment: str
    at: float
    rollout_id: str | None
    arm: str | None


@dataclass(frozen=True, slots=True)
class SampleRecord:
    """One live request of a model group kept for re-evaluation, PII already redacted."""

    sample_id: str
    model_group: str
    at: float
    request_id: str
    deployment: str
    messages: list[dict[str, Any]]
    answer: str
    redactions: dict[str, int]  # what was redacted, by kind


@dataclass(frozen=True, slots=True)
class DriftRecord:
    run_id: str
    model_group: str
    deployment: str
    at: float
    items: int  # samples re-asked
    score: float | None  # mean grade; None when no sample could be asked
    ci_low: float | None  # 95% bootstrap interval of the mean grade
    ci_high: float | None
    baseline: float | None  # the baseline window's mean; None until the window is full
    baseline_runs: int  # runs in the baseline window (0 until it is full)
    baseline_from: float | None  # when the window's first and last runs ran
    baseline_to: float | None
    in_baseline: bool  # this run is one of its (group, deployment)'s baseline window
    drift_margin: float
    drifted: bool  # the alert fired
    # A judged run (sample.reeval_grader: judge): the judge's outcomes over the run's answers (None
    # for other graders); `failed` is a failed judge call or one not made (the judge budget spent).
    judge_agreed: int | None = None
    judge_disagreed: int | None = None
    judge_unparseable: int | None = None
    judge_failed: int | None = None
    judge_spent_usd: Decimal | None = None
    inconclusive: bool = False  # too few agreed verdicts: no baseline run, no alert


class DriftHistoryStore(Protocol):
    async def add_drift_run(self, run: DriftRecord) -> None: ...

    async def drift_runs(self, *, model_group: str | None = None, limit: int = 50) -> list[DriftRecord]:
        """Newest first."""
        ...

    async def drift_baseline(self, model_group: str, deployment: str, *, runs: int) -> list[DriftRecord]:
        """The first `runs` runs marked as the baseline window of (group, deployment), oldest first."""
        ...

    async def prune_drift_runs(self, model_group: str, *, keep: int, before: float) -> int:
        """Remove the group's runs older than `before` and all but the newest `keep`, except the
        runs of a baseline window."""
        ...


class RolloutStore(DriftHistoryStore, Protocol):
    """Rollout state, feedback, production samples and their drift history, in one database."""

    async def migrate(self) -> list[str]: ...

    async def create(self, record: RolloutRecord, created: TransitionRecord) -> None:
        """Insert a new rollout and its creation entry; DuplicateRollout when the group has a live one."""
        ...

    async def get(self, rollout_id: str) -> RolloutRecord | None: ...

    async def current(self) -> list[RolloutRecord]:
        """Every rollout that has not ended, and the latest promoted one of each group."""
        ...

    async def recent(self, *, model_group: str | None = None, limit: int = 50) -> list[RolloutRecord]:
        """Newest first."""
        ...

    async def transition(self, updated: RolloutRecord, expected_version: int, entry: TransitionRecord) -> bool:
        """Write `updated` and its audit entry in one transaction if the stored version is still
        `expected_version`; False (nothing written) when another writer got there first."""
        ...

    async def history(self, rollout_id: str) -> list[TransitionRecord]: ...

    async def add_signals(self, deltas: Sequence[SignalDelta]) -> None: ...

    async def windows(self, rollout_id: str) -> list[ArmWindow]: ...

    async def find_request(self, request_id: str) -> RequestTag | None:
        """From the ledger: None when no row of that request id exists (yet)."""
        ...

    async def add_feedback(self, feedback: Feedback) -> None: ...

    async def feedback_for(self, rollout_id: str) -> list[Feedback]: ...

    async def add_sample(self, sample: SampleRecord) -> None: ...

    async def prune_samples(self, model_group: str, *, keep: int, before: float) -> int:
        """Remove the group's samples older than `before` and all but the newest `keep`."""
        ...

    async def samples(self, model_group: str, *, limit: int) -> list[SampleRecord]:
        """Newest first."""
        ...

    async def close(self) -> None: ...
