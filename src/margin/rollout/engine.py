"""The rollout machinery of one gateway process, all of it off the request path:
- refresh: every `rollouts.refresh_s`, read the live rollouts and swap the split table (so a
  rollback made by any replica reaches this one within that interval);
- flush: every `rollouts.flush_every_s`, add the buffered signals to the store;
- decide: every `rollouts.decide_every_s`, evaluate each live rollout (margin.rollout.decide) and
  apply what it says. Every replica decides; the compare-and-set lets one transition through, and the
  others see it at their next refresh.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from decimal import Decimal

from margin.config.rollout import RolloutsConfig
from margin.errors import MarginError
from margin.periodic import Periodic
from margin.rollout.arms import totals
from margin.rollout.decide import Decision, decide
from margin.rollout.service import RolloutService, replica_name, settings_of
from margin.rollout.signals import SignalBuffer
from margin.rollout.split import GroupSplit, SplitTable, split_of
from margin.storage.protocols import StorageError
from margin.storage.rollouts import RolloutRecord

log = logging.getLogger("margin.rollout")


class RolloutEngine:
    def __init__(
        self,
        service: RolloutService,
        settings: RolloutsConfig,
        *,
        group_deployments: Mapping[str, tuple[str, ...]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.settings = settings
        self.group_deployments = group_deployments  # the config's groups: what a promotion may reroute
        self.clock = clock
        self.split = SplitTable()
        self.signals = SignalBuffer()
        self.actor = f"auto:decider@{replica_name()}"
        self.records: dict[str, RolloutRecord] = {}  # the rollouts read at the last refresh, by id
        # The experiment budget of live rollouts (shadow.budget_usd) and what their shadow and judge
        # calls spent: the store's, plus this replica's since.
        self.experiment_budget: dict[str, Decimal] = {}
        self.experiment_spent: dict[str, Decimal] = {}
        self._loops: list[Periodic] = []

    async def start(self) -> None:
        await self.refresh()
        loops = (
            (self.refresh, self.settings.refresh_s),
            (self.flush, self.settings.flush_every_s),
            (self.decide_all, self.settings.decide_every_s),
        )
        handled = (StorageError, MarginError, ValueError)
        for work, every in loops:
            failed = functools.partial(_work_failed, work.__name__)
            loop = Periodic(f"margin-rollout-{work.__name__}", work, every, handled=handled, on_error=failed)
            loop.start()
            self._loops.append(loop)

    async def stop(self) -> None:
        loops, self._loops = self._loops, []
        await asyncio.gather(*(loop.stop() for loop in loops))
        await self.flush()  # what this replica saw last still counts

    async def refresh(self) -> None:
        records = await self.service.store.current()
        self.records = {r.rollout_id: r for r in records}
        self.experiment_budget = {
            r.rollout_id: settings_of(r).shadow.budget_usd for r in records if r.state in ("shadow", "canary")
        }
        self.split.replace(self._splits(records))
        metrics = self.service.metrics
        if metrics is not None:
            for split in self.split.splits():
                metrics.candidate_share.labels(split.model_group).set(split.candidate_bp / 10_000)

    def _splits(self, records: list[RolloutRecord]) -> list[GroupSplit]:
        live = {r.model_group for r in records if not r.terminal}
        out = []
        for record in records:
            if record.state == "promoted" and (record.model_group in live or not self._still_configured(record)):
                continue  # a newer rollout runs on the group, or the config now names the candidate itself
            split = split_of(record, settings_of(record))
            if split is not None:
                out.append(split)
        return out

    def _still_configured(self, record: RolloutRecord) -> bool:
        deployments = self.group_deployments.get(record.model_group, ())
        return record.stable in deployments and record.candidate not in deployments

    async def flush(self) -> None:
        deltas = self.signals.drain()
        if not deltas:
            return
        try:
            await self.service.store.add_signals(deltas)
        except StorageError:
            self.signals.restore(deltas)
            raise

    async def decide_all(self) -> list[tuple[RolloutRecord, Decision]]:
        """Evaluate every live rollout once; returns the transitions this replica made."""
        await self.flush()
        made = []
        for record in await self.service.store.current():
            if record.terminal:
                continue
            windows = await self.service.store.windows(record.rollout_id)
            if record.state in ("shadow", "canary"):
                spent = totals(windows, arm="shadow").cost_total + totals(windows, arm="judge").cost_total
                self.experiment_spent[record.rollout_id] = spent
            decision = decide(record, settings_of(record), windows, self.clock())
            if decision.action == "wait":
                continue
            moved = await self.service.move(
                record, decision.to_state, decision.to_step, actor=self.actor, reason=decision.reason,
                snapshot=decision.snapshot,
            )  # fmt: skip
            if moved is not None:
                made.append((moved, decision))
        if made:
            await self.refresh()  # this replica applies its own decision at once
        return made


def _work_failed(work: str, exc: Exception) -> None:
    if isinstance(exc, StorageError):  # the store is down: traffic keeps its last split; retried next tick
        log.warning("rollout %s failed: %s", work, exc)
    else:  # MarginError or ValueError: one bad rollout record must not stop the loop
        log.error("rollout %s failed: %s: %s", work, type(exc).__name__, exc)
