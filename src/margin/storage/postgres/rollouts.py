"""The rollout store on PostgreSQL: the state every replica reads and changes (compare-and-set on
the rollout's version), signals added with exact NUMERIC money."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import psycopg

from margin.storage.postgres.session import PgStore
from margin.storage.protocols import StorageError
from margin.storage.rollout_sql import (
    DriftSql,
    RolloutSql,
    drift_from,
    drift_values,
    feedback_from,
    feedback_values,
    histogram_values,
    request_tag,
    rollout_from,
    rollout_values,
    sample_from,
    sample_values,
    signal_values,
    transition_from,
    transition_values,
    update_values,
    windows_from,
)
from margin.storage.rollouts import (
    ArmWindow,
    DriftRecord,
    DuplicateRollout,
    Feedback,
    RequestTag,
    RolloutRecord,
    SampleRecord,
    SignalDelta,
    TransitionRecord,
)

SQL = RolloutSql(param="%s", money_add="{a} + {b}")
DRIFT = DriftSql(param="%s")


class PostgresRolloutStore(PgStore):
    async def create(self, record: RolloutRecord, created: TransitionRecord) -> None:
        try:
            async with self.session.session() as conn, conn.transaction():
                await conn.execute(SQL.insert_rollout, rollout_values(record, boolean=bool))
                await conn.execute(SQL.insert_transition, transition_values(created))
        except StorageError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise DuplicateRollout(f"model group {record.model_group!r} already has a live rollout") from None
            raise

    async def get(self, rollout_id: str) -> RolloutRecord | None:
        rows = await self._rows(SQL.select_one, (rollout_id,))
        return rollout_from(rows[0]) if rows else None

    async def current(self) -> list[RolloutRecord]:
        return [rollout_from(r) for r in await self._rows(SQL.select_current, ())]

    async def recent(self, *, model_group: str | None = None, limit: int = 50) -> list[RolloutRecord]:
        params: tuple[Any, ...] = (limit,) if model_group is None else (model_group, limit)
        rows = await self._rows(SQL.select_list(by_group=model_group is not None), params)
        return [rollout_from(r) for r in rows]

    async def transition(self, updated: RolloutRecord, expected_version: int, entry: TransitionRecord) -> bool:
        async with self.session.session() as conn, conn.transaction():
            cursor = await conn.execute(SQL.update_rollout, update_values(updated, expected_version, boolean=bool))
            if cursor.rowcount != 1:
                return False
            await conn.execute(SQL.insert_transition, transition_values(entry))
        return True

    async def history(self, rollout_id: str) -> list[TransitionRecord]:
        return [transition_from(r) for r in await self._rows(SQL.select_history, (rollout_id,))]

    async def add_signals(self, deltas: Sequence[SignalDelta]) -> None:
        if not deltas:
            return
        # Key order: replicas adding to the same cells lock them in the same order (no deadlock).
        ordered = sorted(deltas, key=lambda d: (d.rollout_id, d.step, d.arm))
        async with self.session.session() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.executemany(SQL.upsert_signals, [signal_values(d, money=Decimal) for d in ordered])
            cells = [values for d in ordered for values in histogram_values(d)]
            if cells:
                await cursor.executemany(SQL.upsert_histogram, cells)

    async def windows(self, rollout_id: str) -> list[ArmWindow]:
        async with self.session.session() as conn:
            signals = await (await conn.execute(SQL.select_signals, (rollout_id,))).fetchall()
            histograms = await (await conn.execute(SQL.select_histograms, (rollout_id,))).fetchall()
        return windows_from(signals, histograms)

    async def find_request(self, request_id: str) -> RequestTag | None:
        rows = await self._rows(SQL.find_request, (request_id,))
        return request_tag(request_id, rows[0][0]) if rows else None

    async def add_feedback(self, feedback: Feedback) -> None:
        async with self.session.session() as conn:
            await conn.execute(SQL.insert_feedback, feedback_values(feedback))

    async def feedback_for(self, rollout_id: str) -> list[Feedback]:
        return [feedback_from(r) for r in await self._rows(SQL.select_feedback, (rollout_id,))]

    async def add_sample(self, sample: SampleRecord) -> None:
        async with self.session.session() as conn:
            await conn.execute(SQL.insert_sample, sample_values(sample))

    async def prune_samples(self, model_group: str, *, keep: int, before: float) -> int:
        async with self.session.session() as conn:
            cursor = await conn.execute(SQL.prune_samples, (model_group, before, model_group, keep))
            return cursor.rowcount

    async def samples(self, model_group: str, *, limit: int) -> list[SampleRecord]:
        return [sample_from(r) for r in await self._rows(SQL.select_samples, (model_group, limit))]

    async def add_drift_run(self, run: DriftRecord) -> None:
        async with self.session.session() as conn:
            await conn.execute(DRIFT.insert, drift_values(run, boolean=bool, money=Decimal))

    async def drift_runs(self, *, model_group: str | None = None, limit: int = 50) -> list[DriftRecord]:
        params: tuple[Any, ...] = (limit,) if model_group is None else (model_group, limit)
        return [drift_from(r) for r in await self._rows(DRIFT.select_recent(by_group=model_group is not None), params)]

    async def drift_baseline(self, model_group: str, deployment: str, *, runs: int) -> list[DriftRecord]:
        return [drift_from(r) for r in await self._rows(DRIFT.select_baseline, (model_group, deployment, True, runs))]

    async def prune_drift_runs(self, model_group: str, *, keep: int, before: float) -> int:
        async with self.session.session() as conn:
            cursor = await conn.execute(DRIFT.prune, (model_group, False, before, model_group, keep))
            return cursor.rowcount

    async def close(self) -> None:
        await self.session.close()
