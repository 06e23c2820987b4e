"""The rollout store on SQLite (one process): its own connection thread on the database file."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

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
from margin.storage.sqlite.functions import register_money_functions
from margin.storage.sqlite.transactions import transaction
from margin.storage.sqlite.worker import SqliteWorker

SQL = RolloutSql(param="?", money_add="dec_add({a}, {b})")
DRIFT = DriftSql(param="?")


def _create(conn: sqlite3.Connection, record: RolloutRecord, created: TransitionRecord) -> None:
    with transaction(conn):
        try:
            conn.execute(SQL.insert_rollout, rollout_values(record))
        except sqlite3.IntegrityError as exc:
            raise DuplicateRollout(f"model group {record.model_group!r} already has a live rollout") from exc
        conn.execute(SQL.insert_transition, transition_values(created))


def _transition(
    conn: sqlite3.Connection, updated: RolloutRecord, expected_version: int, entry: TransitionRecord
) -> bool:
    with transaction(conn):
        cursor = conn.execute(SQL.update_rollout, update_values(updated, expected_version))
        if cursor.rowcount != 1:
            return False
        conn.execute(SQL.insert_transition, transition_values(entry))
    return True


def _add_signals(conn: sqlite3.Connection, deltas: Sequence[SignalDelta]) -> None:
    register_money_functions(conn)
    with transaction(conn):
        for delta in deltas:
            conn.execute(SQL.upsert_signals, signal_values(delta))
            conn.executemany(SQL.upsert_histogram, histogram_values(delta))


def _windows(conn: sqlite3.Connection, rollout_id: str) -> list[ArmWindow]:
    signals = conn.execute(SQL.select_signals, (rollout_id,)).fetchall()
    histograms = conn.execute(SQL.select_histograms, (rollout_id,)).fetchall()
    return windows_from(signals, histograms)


def _rows(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
    return conn.execute(sql, params).fetchall()


def _find_request(conn: sqlite3.Connection, request_id: str) -> RequestTag | None:
    row = conn.execute(SQL.find_request, (request_id,)).fetchone()
    return None if row is None else request_tag(request_id, row[0])


def _write(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> None:
    conn.execute(sql, params)


def _delete(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> int:
    return conn.execute(sql, params).rowcount


class SqliteRolloutStore:
    def __init__(self, path: Path | str | None = None, *, worker: SqliteWorker | None = None) -> None:
        if worker is None:
            if path is None:
                raise ValueError("SqliteRolloutStore needs a path or a worker")
            worker = SqliteWorker(path)
        self.worker = worker

    async def migrate(self) -> list[str]:
        return await self.worker.migrate()

    async def create(self, record: RolloutRecord, created: TransitionRecord) -> None:
        await self.worker.call(_create, record, created)

    async def get(self, rollout_id: str) -> RolloutRecord | None:
        rows = await self.worker.call(_rows, SQL.select_one, (rollout_id,))
        return rollout_from(rows[0]) if rows else None

    async def current(self) -> list[RolloutRecord]:
        return [rollout_from(r) for r in await self.worker.call(_rows, SQL.select_current, ())]

    async def recent(self, *, model_group: str | None = None, limit: int = 50) -> list[RolloutRecord]:
        params: tuple[object, ...] = (limit,) if model_group is None else (model_group, limit)
        rows = await self.worker.call(_rows, SQL.select_list(by_group=model_group is not None), params)
        return [rollout_from(r) for r in rows]

    async def transition(self, updated: RolloutRecord, expected_version: int, entry: TransitionRecord) -> bool:
        return await self.worker.call(_transition, updated, expected_version, entry)

    async def history(self, rollout_id: str) -> list[TransitionRecord]:
        return [transition_from(r) for r in await self.worker.call(_rows, SQL.select_history, (rollout_id,))]

    async def add_signals(self, deltas: Sequence[SignalDelta]) -> None:
        if deltas:
            await self.worker.call(_add_signals, deltas)

    async def windows(self, rollout_id: str) -> list[ArmWindow]:
        return await self.worker.call(_windows, rollout_id)

    async def find_request(self, request_id: str) -> RequestTag | None:
        return await self.worker.call(_find_request, request_id)

    async def add_feedback(self, feedback: Feedback) -> None:
        await self.worker.call(_write, SQL.insert_feedback, feedback_values(feedback))

    async def feedback_for(self, rollout_id: str) -> list[Feedback]:
        return [feedback_from(r) for r in await self.worker.call(_rows, SQL.select_feedback, (rollout_id,))]

    async def add_sample(self, sample: SampleRecord) -> None:
        await self.worker.call(_write, SQL.insert_sample, sample_values(sample))

    async def prune_samples(self, model_group: str, *, keep: int, before: float) -> int:
        return await self.worker.call(_delete, SQL.prune_samples, (model_group, before, model_group, keep))

    async def samples(self, model_group: str, *, limit: int) -> list[SampleRecord]:
        return [sample_from(r) for r in await self.worker.call(_rows, SQL.select_samples, (model_group, limit))]

    async def add_drift_run(self, run: DriftRecord) -> None:
        await self.worker.call(_write, DRIFT.insert, drift_values(run))

    async def drift_runs(self, *, model_group: str | None = None, limit: int = 50) -> list[DriftRecord]:
        params: tuple[object, ...] = (limit,) if model_group is None else (model_group, limit)
        rows = await self.worker.call(_rows, DRIFT.select_recent(by_group=model_group is not None), params)
        return [drift_from(r) for r in rows]

    async def drift_baseline(self, model_group: str, deployment: str, *, runs: int) -> list[DriftRecord]:
        rows = await self.worker.call(_rows, DRIFT.select_baseline, (model_group, deployment, True, runs))
        return [drift_from(r) for r in rows]

    async def prune_drift_runs(self, model_group: str, *, keep: int, before: float) -> int:
        return await self.worker.call(_delete, DRIFT.prune, (model_group, False, before, model_group, keep))

    async def close(self) -> None:
        await self.worker.close()
