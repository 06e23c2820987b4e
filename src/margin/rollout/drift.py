"""Quality drift on production data (docs/evals.md, "Production samples"): every
`sample.reeval_every_s`, in process, the group's stable deployment is asked the newest
`reeval_items` sampled requests again and each new answer is graded: by `reeval_grader` against the
answer stored when the request was sampled, or (`reeval_grader: judge`) by the group's judge, which
scores the new answer against its rubric. The first `baseline_runs` scored runs of a (group,
deployment), averaged, are its baseline window; a run whose mean falls more than `drift_margin`
below it raises a drift alert (log + webhook).

A judged run counts the judge's outcomes (agreed, disagreed across the two orders, unparseable,
failed or not asked once the run's `judge_budget_usd` is spent); only agreed verdicts are scores. A
run with fewer than `reeval_min_verdicts` of them is inconclusive: recorded as such, never a
baseline run, never an alert, never a pass. The judge's calls are margin's own requests as the
drift principal, tagged `judge` and `drift`.

Every run is written to the drift history in the database (score with its bootstrap interval, the
baseline and its window, the judge's counts, whether the alert fired); the window's runs are marked
there, so a restarted gateway keeps comparing against the same baseline. The history is pruned to
`history_runs` / `history_days`, never the window."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import statistics
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from margin.budgets.alerts import iso
from margin.config.rollout import OnlineJudge, ProductionSample, drift_judge_spec, is_judge_spec
from margin.evals.completion import Completer, Completion
from margin.evals.errors import GraderSpecError
from margin.evals.graders.protocol import Grader, GraderEnv, Sample
from margin.evals.graders.registry import build_grader
from margin.evals.stats import mean_interval
from margin.periodic import Periodic
from margin.rollout.alerts import RolloutAlerts
from margin.storage.protocols import StorageError
from margin.storage.rollouts import DriftRecord, RolloutStore, SampleRecord

log = logging.getLogger("margin.rollout")


class DriftCompleter(Completer, Protocol):
    """Asks margin as the drift principal; `judging()`: the same, as the drift judge."""

    def judging(self) -> Completer: ...


@dataclass(slots=True)
class JudgeTally:
    """What a judged run's judge came to, answer by answer."""

    agreed: int = 0
    disagreed: int = 0
    unparseable: int = 0
    failed: int = 0  # a failed judge call, or an answer not judged (the budget was spent)
    spent: Decimal = Decimal(0)

    def count(self, outcome: str) -> None:
        if outcome in ("agreed", "disagreed", "unparseable"):
            setattr(self, outcome, getattr(self, outcome) + 1)
        else:
            self.failed += 1


class BudgetedJudge:
    """The judge grader's `Completer` for one run: adds up what its calls cost and refuses once the
    run's budget is spent (the two orders of one answer run together: the last may overshoot)."""

    def __init__(self, inner: Completer, budget: Decimal) -> None:
        self.inner, self.budget, self.spent = inner, budget, Decimal(0)

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget

    async def complete(
        self, model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> Completion:
        if self.exhausted:
            return Completion(text=None, error="the drift judge's budget for this run is spent")
        reply = await self.inner.complete(model, messages, params)
        self.spent += reply.cost_usd or Decimal(0)
        return reply


class DriftWatch:
    def __init__(
        self,
        store: RolloutStore,
        groups: Mapping[str, ProductionSample],
        stable: Mapping[str, str],
        completer: DriftCompleter,
        alerts: RolloutAlerts,
        *,
        clock: Callable[[], float] = time.time,
        judges: Mapping[str, OnlineJudge | None] | None = None,
        on_drift: Callable[[DriftRecord], None] | None = None,
    ) -> None:
        """`on_drift`: told of every run that drifted, after the alert (the tuning trigger, docs/tuning.md)."""
        self.store = store
        self.on_drift = on_drift
        self.groups = {g: s for g, s in groups.items() if s.reeval_every_s is not None}
        self.stable = stable  # group -> the deployment re-asked (asked by name: no rollout split applies)
        self.completer = completer
        self.alerts = alerts
        self.clock = clock
        self.judges = dict(judges or {})  # group -> its `rollout.judge`, the drift judge's base settings
        self.windows: dict[tuple[str, str], list[DriftRecord]] = {}  # (group, deployment) -> baseline runs
        self._graders: dict[str, Grader] = {}
        self._loops: list[Periodic] = []

    async def start(self) -> None:
        for group, settings in self.groups.items():
            every = settings.reeval_every_s
            assert every is not None
            run, failed = functools.partial(self.run_once, group), functools.partial(_run_failed, group)
            handled = (StorageError, GraderSpecError)
            loop = Periodic(f"margin-drift-{group}", run, every, handled=handled, on_error=failed)
            loop.start()
            self._loops.append(loop)

    async def stop(self) -> None:
        loops, self._loops = self._loops, []
        await asyncio.gather(*(loop.stop() for loop in loops))

    def _grader(self, group: str) -> Grader:
        if group not in self._graders:
            self._graders[group] = build_grader(self.groups[group].reeval_grader, GraderEnv())
        return self._graders[group]

    async def run_once(self, group: str) -> DriftRecord:
        settings = self.groups[group]
        deployment = self.stable[group]
        samples = await self.store.samples(group, limit=settings.reeval_items)
        if is_judge_spec(settings.reeval_grader):
            scores, tally = await self._judged(group, deployment, samples, settings)
            return await self._record(group, deployment, scores, settings, items=len(samples), tally=tally)
        grader = self._grader(group)
        scores = []
        for sample in samples:
            answer = await self.completer.complete(deployment, sample.messages, {})
            if answer.ok and answer.text is not None:
                grade = await grader.grade(Sample(sample.messages, answer.text, references=(sample.answer,)))
                scores.append(grade.score or 0.0)
            else:
                scores.append(0.0)  # a failed call is no answer: it fails the item
        return await self._record(group, deployment, scores, settings, items=len(scores))

    async def _judged(
        self, group: str, deployment: str, samples: Sequence[SampleRecord], settings: ProductionSample
    ) -> tuple[list[float], JudgeTally]:
        """Each sample re-asked and the new answer scored by the judge against its rubric alone: the
        answer recorded at sampling time is no reference (it may itself be from a drifted deployment)."""
        judge = BudgetedJudge(self.completer.judging(), settings.judge_budget_usd)
        grader = build_grader(drift_judge_spec(settings, self.judges.get(group)), GraderEnv(judge_target=judge))
        scores: list[float] = []
        tally = JudgeTally()
        for done, sample in enumerate(samples):
            if judge.exhausted:
                tally.failed += len(samples) - done  # neither re-asked nor judged
                break
            answer = await self.completer.complete(deployment, sample.messages, {})
            if not answer.ok or answer.text is None:
                scores.append(0.0)  # the deployment gave no answer: it fails the item, nothing to judge
                continue
            grade = await grader.grade(Sample(sample.messages, answer.text, item_id=sample.sample_id))
            outcome = grade.judge or ("agreed" if grade.score is not None else "error")
            tally.count(outcome)
            if outcome == "agreed" and grade.score is not None:
                scores.append(grade.score)
        tally.spent = judge.spent
        return scores, tally

    async def window(self, group: str, deployment: str, runs: int) -> list[DriftRecord]:
        """The baseline window's runs of (group, deployment), from the database until it is full
        (other replicas may be adding to it), then from memory."""
        key = (group, deployment)
        cached = self.windows.get(key)
        if cached is None or len(cached) < runs:
            cached = self.windows[key] = await self.store.drift_baseline(group, deployment, runs=runs)
        return cached

    async def _record(
        self, group: str, deployment: str, scores: list[float], settings: ProductionSample, *, items: int,
        tally: JudgeTally | None = None,
    ) -> DriftRecord:  # fmt: skip
        window = (await self.window(group, deployment, settings.baseline_runs))[: settings.baseline_runs]
        score = statistics.fmean(scores) if scores else None
        interval = mean_interval(scores)
        full = len(window) >= settings.baseline_runs
        baseline = statistics.fmean(r.score for r in window if r.score is not None) if full else None
        inconclusive = tally is not None and tally.agreed < settings.reeval_min_verdicts
        drifted = (
            not inconclusive and score is not None and baseline is not None and score < baseline - settings.drift_margin
        )
        run = DriftRecord(
            run_id=f"drift_{uuid.uuid4().hex[:16]}", model_group=group, deployment=deployment, at=self.clock(),
            items=items, score=score, ci_low=interval.low if interval else None,
            ci_high=interval.high if interval else None, baseline=baseline, baseline_runs=len(window) if full else 0,
            baseline_from=window[0].at if full else None, baseline_to=window[-1].at if full else None,
            in_baseline=score is not None and not full and not inconclusive, drift_margin=settings.drift_margin,
            drifted=drifted, inconclusive=inconclusive,
        )  # fmt: skip
        if tally is not None:
            run = dataclasses.replace(
                run, judge_agreed=tally.agreed, judge_disagreed=tally.disagreed, judge_unparseable=tally.unparseable,
                judge_failed=tally.failed, judge_spent_usd=tally.spent,
            )  # fmt: skip
        await self.store.add_drift_run(run)
        await self.store.prune_drift_runs(
            group, keep=settings.history_runs, before=run.at - settings.history_days * 86400
        )
        if drifted:
            self._alert(run)
            if self.on_drift is not None:
                self.on_drift(run)
        elif inconclusive:
            log.warning(
                "drift re-evaluation of %s (%s) inconclusive: %s agreed judge verdicts, %s needed (%s)",
                group, deployment, run.judge_agreed, settings.reeval_min_verdicts, judge_counts(run),
            )  # fmt: skip
        return run

    def _alert(self, run: DriftRecord) -> None:
        assert run.score is not None and run.baseline is not None
        self.alerts.emit_payload(
            {"type": "margin.quality_drift", "model_group": run.model_group, "deployment": run.deployment,
             "score": run.score, "ci_low": run.ci_low, "ci_high": run.ci_high, "baseline": run.baseline,
             "margin": run.drift_margin, "items": run.items, "at": run.at, "run_id": run.run_id,
             "judge": judge_view(run)},
            f"quality drift on {run.model_group} ({run.deployment}): {run.score:.3f} over {run.items} samples, "
            f"baseline {run.baseline:.3f}, margin {run.drift_margin}",
        )  # fmt: skip


def drift_view(run: DriftRecord) -> dict[str, Any]:
    """One re-evaluation as JSON (`margin eval drift history --json`, `/admin/drift/history`)."""
    return {
        "run_id": run.run_id,
        "model_group": run.model_group,
        "deployment": run.deployment,
        "at": iso(run.at),
        "items": run.items,
        "score": run.score,
        "ci_low": run.ci_low,
        "ci_high": run.ci_high,
        "baseline": run.baseline,
        "baseline_runs": run.baseline_runs,
        "baseline_from": iso(run.baseline_from) if run.baseline_from is not None else None,
        "baseline_to": iso(run.baseline_to) if run.baseline_to is not None else None,
        "in_baseline": run.in_baseline,
        "drift_margin": run.drift_margin,
        "drifted": run.drifted,
        "inconclusive": run.inconclusive,
        "judge": judge_view(run),
    }


def judge_view(run: DriftRecord) -> dict[str, Any] | None:
    """A judged run's judge outcomes and spend (None for a run graded otherwise)."""
    if run.judge_agreed is None:
        return None
    return {
        "agreed": run.judge_agreed,
        "disagreed": run.judge_disagreed,
        "unparseable": run.judge_unparseable,
        "failed": run.judge_failed,
        "spent_usd": None if run.judge_spent_usd is None else str(run.judge_spent_usd),
    }


def judge_counts(run: DriftRecord) -> str:
    return (
        f"judge agreed {run.judge_agreed}  disagreed {run.judge_disagreed}  unparseable {run.judge_unparseable}  "
        f"failed {run.judge_failed}"
    )


def _run_failed(group: str, exc: Exception) -> None:  # the next run tries again
    log.warning("drift re-evaluation of %s failed: %s", group, exc)
