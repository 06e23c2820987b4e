"""Rollouts as live objects: start, move, pause, resume, abort, history. The CLI, the admin API and
the periodic decider all change state through this one service, so every change is checked against
the state machine, written as a compare-and-set with its audit entry, alerted and counted.

States: pending -> gated -> shadow -> canary (steps 0..n-1) -> promoted; rolled_back and aborted
from any state that has not ended. `paused` is a flag, not a state: it freezes forward moves.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from margin.config.model import MarginConfig, ModelGroupConfig
from margin.config.rollout import RolloutSettings
from margin.evals.errors import GraderSpecError
from margin.evals.graders.protocol import GraderEnv
from margin.evals.graders.registry import build_grader, split_spec
from margin.rollout.alerts import RolloutAlerts
from margin.rollout.errors import RolloutConflict, RolloutError, RolloutNotFound, UnknownRolloutTarget
from margin.rollout.metrics import RolloutMetrics
from margin.storage.rollouts import (
    DuplicateRollout,
    RolloutRecord,
    RolloutState,
    RolloutStore,
    TransitionRecord,
)

# Forward moves the state machine allows (rolled_back and aborted are allowed from every live state).
FORWARD: dict[str, frozenset[str]] = {
    "pending": frozenset({"gated"}),
    "gated": frozenset({"shadow", "canary"}),
    "shadow": frozenset({"canary"}),
    "canary": frozenset({"canary", "promoted"}),
}
STOPS = frozenset({"rolled_back", "aborted"})


def replica_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def settings_of(record: RolloutRecord) -> RolloutSettings:
    """The settings the rollout started with (kept in its record, so a config edit mid-rollout
    changes nothing under it)."""
    return RolloutSettings.model_validate(record.plan)


def _check_graders(settings: RolloutSettings) -> None:
    """Build the online and shadow graders and the judge once, so a bad spec is refused before the
    rollout exists (the judge's model group is checked with the config)."""
    for where, spec in (("online_grader", settings.online_grader), ("shadow.grader", settings.shadow.grader)):
        if spec is None:
            continue
        try:
            build_grader(spec, GraderEnv())
        except (GraderSpecError, RuntimeError) as exc:
            raise RolloutError(f"rollout.{where}: {exc}", param=where) from None
        if split_spec(spec)[0] == "judge":
            raise RolloutError(
                f"rollout.{where}: a judge grades live answers through `rollout.judge` (docs/rollouts.md); "
                "use a grader without a judge here",
                param=where,
            )
    if settings.judge is not None:
        try:
            build_grader(settings.judge.grader_spec(), GraderEnv())
        except (GraderSpecError, RuntimeError) as exc:
            raise RolloutError(f"rollout.judge: {exc}", param="judge") from None


class RolloutService:
    def __init__(
        self,
        store: RolloutStore,
        config: MarginConfig,
        *,
        clock: Callable[[], float] = time.time,
        alerts: RolloutAlerts | None = None,
        metrics: RolloutMetrics | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.alerts = alerts or RolloutAlerts()
        self.metrics = metrics

    # --- starting -------------------------------------------------------------------------------

    def group(self, name: str) -> ModelGroupConfig:
        for group in self.config.models:
            if group.name == name:
                return group
        known = ", ".join(g.name for g in self.config.models) or "none"
        raise UnknownRolloutTarget(f"unknown model group {name!r} (configured: {known})", param="model_group")

    def _targets(self, group: ModelGroupConfig, candidate: str, stable: str | None) -> str:
        deployments = {d.name for d in self.config.deployments}
        if candidate not in deployments:
            raise UnknownRolloutTarget(
                f"unknown deployment {candidate!r}: the candidate must be a configured deployment "
                f"(configured: {', '.join(sorted(deployments)) or 'none'})",
                param="candidate",
            )
        chosen = stable or group.deployments[0]
        if chosen not in group.deployments:
            raise UnknownRolloutTarget(
                f"model group {group.name!r} has no deployment {chosen!r} to replace "
                f"(its deployments: {', '.join(group.deployments)})",
                param="stable",
            )
        if chosen == candidate:
            raise UnknownRolloutTarget(
                f"the candidate {candidate!r} is already the stable deployment", param="candidate"
            )
        return chosen

    async def start(
        self, group_name: str, candidate: str, *, stable: str | None = None, actor: str, reason: str = ""
    ) -> RolloutRecord:
        group = self.group(group_name)
        chosen = self._targets(group, candidate, stable)
        settings = group.rollout or RolloutSettings()
        _check_graders(settings)
        now = self.clock()
        record = RolloutRecord(
            rollout_id=f"ro_{uuid.uuid4().hex[:12]}", model_group=group.name, stable=chosen, candidate=candidate,
            state="pending", step=-1, paused=False, plan=settings.model_dump(mode="json"), created_at=now,
            updated_at=now, stage_started_at=now, version=0, created_by=actor,
            reason=reason or "started: waiting for the offline gate",
        )  # fmt: skip
        created = TransitionRecord(record.rollout_id, 0, now, "", "pending", -1, -1, actor, record.reason)
        try:
            await self.store.create(record, created)
        except DuplicateRollout:
            live = [r for r in await self.store.recent(model_group=group.name, limit=5) if not r.terminal]
            which = f" ({live[0].rollout_id}, {live[0].state})" if live else ""
            raise RolloutConflict(
                f"model group {group.name!r} already has a rollout in progress{which}: abort it or let it end first",
                param="model_group",
            ) from None
        self._announce(record, created)
        return record

    # --- finding ---------------------------------------------------------------------------------

    async def find(self, ref: str) -> RolloutRecord:
        """A rollout by id, or a model group's latest rollout."""
        record = await self.store.get(ref)
        if record is not None:
            return record
        latest = await self.store.recent(model_group=ref, limit=1)
        if latest:
            return latest[0]
        raise RolloutNotFound(f"no rollout {ref!r} (give a rollout id or a model group that has one)", param="rollout")

    # --- moving ----------------------------------------------------------------------------------

    async def move(
        self,
        record: RolloutRecord,
        to_state: RolloutState,
        to_step: int,
        *,
        actor: str,
        reason: str,
        snapshot: dict[str, Any] | None = None,
        paused: bool | None = None,
    ) -> RolloutRecord | None:
        """Apply one transition if the state machine allows it and nobody changed the rollout since
        `record` was read; None when another writer got there first."""
        self._check_allowed(record, to_state, to_step)
        now = self.clock()
        stage_changed = (to_state, to_step) != (record.state, record.step)
        updated = replace(
            record, state=to_state, step=to_step, paused=record.paused if paused is None else paused,
            updated_at=now, stage_started_at=now if stage_changed else record.stage_started_at,
            version=record.version + 1, reason=reason,
        )  # fmt: skip
        entry = TransitionRecord(
            record.rollout_id, updated.version, now, record.state, to_state, record.step, to_step, actor, reason,
            snapshot or {},
        )  # fmt: skip
        if not await self.store.transition(updated, record.version, entry):
            return None
        self._announce(updated, entry)
        return updated

    def _check_allowed(self, record: RolloutRecord, to_state: str, to_step: int) -> None:
        if record.terminal:
            raise RolloutConflict(f"rollout {record.rollout_id} has ended ({record.state}); start a new one")
        same = (to_state, to_step) == (record.state, record.step)
        if same or to_state in STOPS or to_state in FORWARD.get(record.state, frozenset()):
            if record.state == "canary" and to_state == "canary" and to_step not in (record.step, record.step + 1):
                raise RolloutConflict(f"rollout {record.rollout_id}: canary steps move one at a time")
            return
        raise RolloutConflict(f"rollout {record.rollout_id} is {record.state}: it cannot move to {to_state}")

    async def _operator_move(
        self,
        ref: str,
        actor: str,
        reason: str,
        target: Callable[[RolloutRecord], tuple[RolloutState, int, bool | None]],
    ) -> RolloutRecord:
        record = await self.find(ref)
        to_state, to_step, paused = target(record)
        moved = await self.move(record, to_state, to_step, actor=actor, reason=reason, paused=paused)
        if moved is None:
            raise RolloutConflict(f"rollout {record.rollout_id} changed meanwhile (another replica moved it): retry")
        return moved

    async def record_gate(
        self, ref: str, *, passed: bool, actor: str, reason: str, verdict: dict[str, Any]
    ) -> RolloutRecord:
        """The offline gate's outcome: gated, or aborted (the candidate never takes traffic)."""
        record = await self.find(ref)
        if record.state != "pending":
            raise RolloutConflict(f"rollout {record.rollout_id} is {record.state}: its gate was already decided")
        to_state: RolloutState = "gated" if passed else "aborted"
        moved = await self.move(record, to_state, -1, actor=actor, reason=reason, snapshot={"gate": verdict})
        if moved is None:
            raise RolloutConflict(f"rollout {record.rollout_id} changed meanwhile: retry")
        return moved

    async def promote(self, ref: str, *, actor: str, full: bool = False, reason: str = "") -> RolloutRecord:
        """An operator moves the rollout one stage forward (`full`: straight to promoted)."""

        def target(record: RolloutRecord) -> tuple[RolloutState, int, bool | None]:
            steps = len(settings_of(record).steps)
            if full:
                if record.state == "pending":
                    raise RolloutConflict(f"rollout {record.rollout_id} has not passed its gate yet")
                return "promoted", max(record.step, steps - 1), None
            if record.state == "pending":
                return "gated", -1, None
            if record.state in ("gated", "shadow"):
                return "canary", 0, None
            if record.state == "canary" and record.step < steps - 1:
                return "canary", record.step + 1, None
            return "promoted", record.step, None

        return await self._operator_move(ref, actor, reason or "promoted by an operator", target)

    async def pause(self, ref: str, *, actor: str, reason: str = "") -> RolloutRecord:
        return await self._operator_move(
            ref, actor, reason or "paused by an operator", lambda r: (r.state, r.step, True)
        )

    async def resume(self, ref: str, *, actor: str, reason: str = "") -> RolloutRecord:
        return await self._operator_move(
            ref, actor, reason or "resumed by an operator", lambda r: (r.state, r.step, False)
        )

    async def abort(self, ref: str, *, actor: str, reason: str = "") -> RolloutRecord:
        return await self._operator_move(
            ref,
            actor,
            reason or "aborted by an operator: all traffic back to stable",
            lambda r: ("aborted", r.step, None),
        )

    async def history(self, ref: str) -> tuple[RolloutRecord, list[TransitionRecord]]:
        record = await self.find(ref)
        return record, await self.store.history(record.rollout_id)

    def _announce(self, record: RolloutRecord, entry: TransitionRecord) -> None:
        self.alerts.emit(record, entry)
        if self.metrics is not None:
            self.metrics.transition(record.model_group, entry.from_state, entry.to_state, entry.actor)
