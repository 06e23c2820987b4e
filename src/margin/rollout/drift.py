"""Quality drift on production data (docs/evals.md, "Production samples"): every
`sample.reeval_every_s`, in process, the group's stable deployment is asked the newest
`reeval_items` sampled requests again and each new answer is graded against the answer stored when
the request was sampled. The first `baseline_runs` runs, averaged, are the baseline; a run whose mean
falls more than `drift_margin` below it raises a drift alert (log + webhook).

Runs are kept in memory: a restarted process builds its baseline again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from margin.config.rollout import ProductionSample
from margin.evals.completion import Completer
from margin.evals.graders.protocol import Grader, GraderEnv, Sample
from margin.evals.graders.registry import build_grader
from margin.rollout.alerts import RolloutAlerts
from margin.storage.protocols import StorageError
from margin.storage.rollouts import RolloutStore

log = logging.getLogger("margin.rollout")


@dataclass(frozen=True, slots=True)
class DriftRun:
    model_group: str
    deployment: str
    at: float
    items: int
    score: float | None  # mean grade; None when no sample could be asked
    baseline: float | None  # None until `baseline_runs` runs exist
    drifted: bool


@dataclass(slots=True)
class _History:
    scores: list[float] = field(default_factory=list)


class DriftWatch:
    def __init__(
        self,
        store: RolloutStore,
        groups: Mapping[str, ProductionSample],
        stable: Mapping[str, str],
        completer: Completer,
        alerts: RolloutAlerts,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.groups = {g: s for g, s in groups.items() if s.reeval_every_s is not None}
        self.stable = stable  # group -> the deployment re-asked (asked by name: no rollout split applies)
        self.completer = completer
        self.alerts = alerts
        self.clock = clock
        self.history: dict[str, _History] = {g: _History() for g in self.groups}
        self._graders: dict[str, Grader] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for group, settings in self.groups.items():
            every = settings.reeval_every_s
            assert every is not None
            self._tasks.append(asyncio.create_task(self._loop(group, every), name=f"margin-drift-{group}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _loop(self, group: str, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.run_once(group)
            except StorageError as exc:
                log.warning("drift re-evaluation of %s failed: %s", group, exc)

    def _grader(self, group: str) -> Grader:
        if group not in self._graders:
            self._graders[group] = build_grader(self.groups[group].reeval_grader, GraderEnv())
        return self._graders[group]

    async def run_once(self, group: str) -> DriftRun:
        settings = self.groups[group]
        deployment = self.stable[group]
        samples = await self.store.samples(group, limit=settings.reeval_items)
        grader = self._grader(group)
        scores = []
        for sample in samples:
            answer = await self.completer.complete(deployment, sample.messages, {})
            if answer.ok and answer.text is not None:
                grade = await grader.grade(Sample(sample.messages, answer.text, references=(sample.answer,)))
                scores.append(grade.score or 0.0)
            else:
                scores.append(0.0)  # a failed call is no answer: it fails the item
        return self._record(group, deployment, scores, settings)

    def _record(self, group: str, deployment: str, scores: list[float], settings: ProductionSample) -> DriftRun:
        history = self.history[group]
        score = statistics.fmean(scores) if scores else None
        baseline = (
            statistics.fmean(history.scores[: settings.baseline_runs])
            if len(history.scores) >= settings.baseline_runs
            else None
        )
        drifted = score is not None and baseline is not None and score < baseline - settings.drift_margin
        if score is not None:
            history.scores.append(score)
        run = DriftRun(group, deployment, self.clock(), len(scores), score, baseline, drifted)
        if drifted:
            self.alerts.emit_payload(
                {"type": "margin.quality_drift", "model_group": group, "deployment": deployment, "score": score,
                 "baseline": baseline, "margin": settings.drift_margin, "items": len(scores), "at": run.at},
                f"quality drift on {group} ({deployment}): {score:.3f} over {len(scores)} samples, "
                f"baseline {baseline:.3f}, margin {settings.drift_margin}",
            )  # fmt: skip
        return run
