"""Counters on PostgreSQL, shared by every replica: reserve is one call of the `margin_reserve`
function (migration 0002), which locks the counters it charges and adds only when all fit.

A reservation's intent is a marker row of the same table, `intent:<id>` at bucket 0 holding its
state (1 open, 2 swept, 3 settled), written in the reserve's transaction and moved by `finish`
under a row lock with its adjustments. Only its state lives here: the orphan search that lets a
surviving replica sweep a dead one's reservations needs Redis (margin.budgets.sweeper); without it
a dead replica's reservations are settled by its successor's journal replay."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from margin.storage.postgres.session import Connection, PgStore
from margin.storage.protocols import HOLD_SUFFIX, Adjust, Charge, Intent, IntentState, Verdict

_RESERVE = "SELECT failed, used FROM margin_reserve(%s, %s, %s, %s, %s, %s, %s, %s)"
_ADJUST = (
    "INSERT INTO margin_counters (name, bucket, value, expires_at) "
    "SELECT n, b, greatest(d, 0), e FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::float8[]) "
    "AS t (n, b, d, e) "
    "ON CONFLICT (name, bucket) DO UPDATE SET "
    "value = greatest(0, margin_counters.value + (SELECT d FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) "
    "AS u (n, b, d) WHERE u.n = excluded.name AND u.b = excluded.bucket)), "
    "expires_at = greatest(margin_counters.expires_at, excluded.expires_at)"
)
_SUM = "SELECT coalesce(sum(value), 0) FROM margin_counters WHERE name = %s AND bucket BETWEEN %s AND %s"
_STATES: dict[IntentState, int] = {"open": 1, "swept": 2, "settled": 3, "released": 4}
_STATE_OF = {code: state for state, code in _STATES.items()}
_SET_MARKER = (
    "INSERT INTO margin_counters (name, bucket, value, expires_at) VALUES (%s, 0, %s, %s) "
    "ON CONFLICT (name, bucket) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
_READ_MARKER = "SELECT value FROM margin_counters WHERE name = %s AND bucket = 0 FOR UPDATE"


def _merged(adjustments: Sequence[Adjust]) -> list[Adjust]:
    """One entry per (name, bucket): an INSERT ... ON CONFLICT may touch each row only once."""
    merged: dict[tuple[str, int], Adjust] = {}
    for item in adjustments:
        key = (item.name, item.bucket)
        seen = merged.get(key)
        merged[key] = (
            item
            if seen is None
            else Adjust(item.name, item.bucket, seen.delta + item.delta, max(seen.expires_at, item.expires_at))
        )
    return sorted(merged.values(), key=lambda a: (a.name, a.bucket))  # one lock order for all replicas


class PostgresCounters(PgStore):
    async def reserve(self, charges: Sequence[Charge]) -> Verdict:
        async with self.session.session() as conn:
            return await self._reserve(conn, charges)

    async def reserve_intent(self, charges: Sequence[Charge], intent: Intent) -> Verdict:
        async with self.session.session() as conn, conn.transaction():
            verdict = await self._reserve(conn, charges)
            if verdict.admitted:
                await conn.execute(_SET_MARKER, (f"intent:{intent.id}", _STATES["open"], intent.expires_at))
        return verdict

    async def finish(
        self, intent: str, owner: str, plans: Mapping[IntentState, Sequence[Adjust]], to: IntentState, keep_until: float
    ) -> IntentState | None:
        marker = f"intent:{intent}"
        async with self.session.session() as conn, conn.transaction():
            cursor = await conn.execute(_READ_MARKER, (marker,))
            row = await cursor.fetchone()
            state = _STATE_OF.get(int(row[0])) if row is not None else None
            if state is not None and state in plans:
                await self._adjust(conn, plans[state])
                if to == "settled":  # nothing can follow it: a later finish finds nothing and does nothing
                    await conn.execute("DELETE FROM margin_counters WHERE name = %s AND bucket = 0", (marker,))
                else:
                    await conn.execute(_SET_MARKER, (marker, _STATES[to], keep_until))
        return state

    @staticmethod
    async def _reserve(conn: Connection, charges: Sequence[Charge]) -> Verdict:
        params = (
            [c.name for c in charges],
            [c.first for c in charges],
            [c.last for c in charges],
            [c.hold for c in charges],
            [c.amount for c in charges],
            [c.limit for c in charges],
            [c.expires_at for c in charges],
            HOLD_SUFFIX,
        )
        cursor = await conn.execute(_RESERVE, params)
        row = await cursor.fetchone()
        if row is None or row[0] < 0:
            return Verdict()
        return Verdict(failed=int(row[0]), used=int(row[1]))

    async def adjust(self, adjustments: Sequence[Adjust]) -> None:
        async with self.session.session() as conn:
            await self._adjust(conn, adjustments)

    @staticmethod
    async def _adjust(conn: Connection, adjustments: Sequence[Adjust]) -> None:
        items = _merged(adjustments)
        if not items:
            return
        names, buckets, deltas = [a.name for a in items], [a.bucket for a in items], [a.delta for a in items]
        params = (names, buckets, deltas, [a.expires_at for a in items], names, buckets, deltas)
        await conn.execute(_ADJUST, params)

    async def read(self, name: str, first: int, last: int) -> int:
        async with self.session.session() as conn:
            cursor = await conn.execute(_SUM, (name, first, last))
            row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def sync(self, name: str, first: int, last: int, floor: int, expires_at: float) -> None:
        async with self.session.session() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))
            cursor = await conn.execute(_SUM, (name, first, last))
            row = await cursor.fetchone()
            missing = floor - (int(row[0]) if row is not None else 0)
            if missing > 0:
                await conn.execute(_ADJUST, ([name], [last], [missing], [expires_at], [name], [last], [missing]))

    async def prune(self, now: float) -> int:
        async with self.session.session() as conn:
            cursor = await conn.execute("DELETE FROM margin_counters WHERE expires_at <= %s", (now,))
            return cursor.rowcount

    async def health(self) -> bool:
        return await self.session.health()

    async def close(self) -> None:
        await self.session.close()
