"""Quality drift on production data (docs/evals.md, "Production samples"): every
`sample.reeval_every_s`, in process, the group's stable deployment is asked the newest
`reeval_items` sampled requests again and each new answer is graded against the answer stored when
the request was sampled. The first `baseline_runs` scored runs of a (group, deployment), averaged,
are its baseline window; a run whose mean falls more than `drift_margin` below it raises a drift
alert (log + webhook).

Every run is written to the drift history in the database (score with its bootstrap interval, the
baseline and its window, whether the alert fired); the window's runs are marked there, so a
restarted gateway keeps comparing against the same baseline. The history is pruned to
`history_runs` / `history_days`, never the window."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from margin.budgets.alerts import iso
from margin.config.rollout import ProductionSample
from margin.evals.completion import Completer
from margin.evals.graders.protocol import Grader, GraderEnv, Sample
from margin.evals.graders.registry import build_grader
from margin.evals.stats import mean_interval
from margin.rollout.alerts import RolloutAlerts
from margin.storage.protocols import StorageError
from margin.storage.rollouts import DriftRecord, RolloutStore

log = logging.getLogger("margin.rollout")


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
        self.windows: dict[tuple[str, str], list[DriftRecord]] = {}  # (group, deployment) -> baseline runs
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

    async def run_once(self, group: str) -> DriftRecord:
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
        return await self._record(group, deployment, scores, settings)

    async def window(self, group: str, deployment: str, runs: int) -> list[DriftRecord]:
        """The baseline window's runs of (group, deployment), from the database until it is full
        (other replicas may be adding to it), then from memory."""
        key = (group, deployment)
        cached = self.windows.get(key)
        if cached is None or len(cached) < runs:
            cached = self.windows[key] = await self.store.drift_baseline(group, deployment, runs=runs)
        return cached

    async def _record(
        self, group: str, deployment: str, scores: list[float], settings: ProductionSample
    ) -> DriftRecord:
        window = (await self.window(group, deployment, settings.baseline_runs))[: settings.baseline_runs]
        score = statistics.fmean(scores) if scores else None
        interval = mean_interval(scores)
        full = len(window) >= settings.baseline_runs
        baseline = statistics.fmean(r.score for r in window if r.score is not None) if full else None
        drifted = score is not None and baseline is not None and score < baseline - settings.drift_margin
        run = DriftRecord(
            run_id=f"drift_{uuid.uuid4().hex[:16]}", model_group=group, deployment=deployment, at=self.clock(),
            items=len(scores), score=score, ci_low=interval.low if interval else None,
            ci_high=interval.high if interval else None, baseline=baseline, baseline_runs=len(window) if full else 0,
            baseline_from=window[0].at if full else None, baseline_to=window[-1].at if full else None,
            in_baseline=score is not None and not full, drift_margin=settings.drift_margin, drifted=drifted,
        )  # fmt: skip
        await self.store.add_drift_run(run)
        await self.store.prune_drift_runs(
            group, keep=settings.history_runs, before=run.at - settings.history_days * 86400
        )
        if drifted:
            self._alert(run)
        return run

    def _alert(self, run: DriftRecord) -> None:
        assert run.score is not None and run.baseline is not None
        self.alerts.emit_payload(
            {"type": "margin.quality_drift", "model_group": run.model_group, "deployment": run.deployment,
             "score": run.score, "ci_low": run.ci_low, "ci_high": run.ci_high, "baseline": run.baseline,
             "margin": run.drift_margin, "items": run.items, "at": run.at, "run_id": run.run_id},
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
    }
