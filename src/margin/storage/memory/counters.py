"""Counters in a dict. Atomic because reserve and adjust never await: the event loop runs each whole.

Intents too, with the shared-store semantics (heartbeats, orphans), so that the limiter's and the
sweeper's logic can be exercised in one process; in production these counters die with the process
and their intents with them."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from margin.storage.protocols import HOLD_SUFFIX, Adjust, Charge, Intent, IntentState, Orphan, Verdict


@dataclass(slots=True)
class _Intent:
    record: Intent
    state: IntentState = "open"
    attempts: dict[int, str] = field(default_factory=dict)


class MemoryCounters:
    def __init__(self) -> None:
        self._rows: dict[tuple[str, int], list[float]] = {}  # (name, bucket) -> [value, expires_at]
        self._intents: dict[str, _Intent] = {}
        self._heartbeats: dict[str, float] = {}  # owner -> until (monotonic)

    async def migrate(self) -> list[str]:
        return []

    def _sum(self, name: str, first: int, last: int) -> int:
        rows = self._rows
        if last - first < 64:
            return sum(int(rows[(name, b)][0]) for b in range(first, last + 1) if (name, b) in rows)
        return sum(int(v[0]) for (n, b), v in rows.items() if n == name and first <= b <= last)

    def _add(self, name: str, bucket: int, delta: int, expires_at: float) -> None:
        row = self._rows.get((name, bucket))
        if row is None:
            if delta > 0:
                self._rows[(name, bucket)] = [float(delta), expires_at]
            return
        row[0] = max(0.0, row[0] + delta)
        row[1] = max(row[1], expires_at)

    async def reserve(self, charges: Sequence[Charge]) -> Verdict:
        for index, charge in enumerate(charges):
            used = self._sum(charge.name, charge.first, charge.last)
            if charge.hold is not None:
                used += self._sum(charge.name + HOLD_SUFFIX, charge.hold - 1, charge.hold)
            if charge.amount > 0 and used + charge.amount > charge.limit:
                return Verdict(failed=index, used=used)
        for charge in charges:
            if charge.hold is None:
                self._add(charge.name, charge.last, charge.amount, charge.expires_at)
            else:
                self._add(charge.name + HOLD_SUFFIX, charge.hold, charge.amount, charge.expires_at)
        return Verdict()

    async def reserve_intent(self, charges: Sequence[Charge], intent: Intent) -> Verdict:
        verdict = await self.reserve(charges)
        if verdict.admitted:
            self._intents[intent.id] = _Intent(intent)
        return verdict

    async def adjust(self, adjustments: Sequence[Adjust]) -> None:
        for item in adjustments:
            self._add(item.name, item.bucket, item.delta, item.expires_at)

    async def finish(
        self, intent: str, owner: str, plans: Mapping[IntentState, Sequence[Adjust]], to: IntentState, keep_until: float
    ) -> IntentState | None:
        found = self._intents.get(intent)
        if found is None:
            return None
        state = found.state
        if state in plans:
            await self.adjust(plans[state])
            found.state = to
            if to == "settled":  # nothing can follow it: a later finish finds nothing and does nothing
                del self._intents[intent]
        return state

    async def mark_attempt(self, intent: str, index: int, mark: str) -> None:
        found = self._intents.get(intent)
        if found is not None:
            found.attempts[index] = mark

    async def heartbeat(self, owner: str, ttl_s: float) -> None:
        self._heartbeats[owner] = time.monotonic() + ttl_s  # real time, as Redis expires a key

    async def orphans(self, now: float, limit: int) -> list[Orphan]:
        found = []
        for item in self._intents.values():
            record = item.record
            alive = self._heartbeats.get(record.owner, float("-inf")) > time.monotonic()
            if item.state == "open" and (not alive or record.sweep_at <= now):
                found.append(Orphan(record, tuple(item.attempts[i] for i in sorted(item.attempts))))
        return found[:limit]

    async def read(self, name: str, first: int, last: int) -> int:
        return self._sum(name, first, last)

    async def sync(self, name: str, first: int, last: int, floor: int, expires_at: float) -> None:
        missing = floor - self._sum(name, first, last)
        if missing > 0:
            self._add(name, last, missing, expires_at)

    async def prune(self, now: float) -> int:
        expired = [key for key, (_, expires_at) in self._rows.items() if expires_at <= now]
        for key in expired:
            del self._rows[key]
        for name in [name for name, item in self._intents.items() if item.record.expires_at <= now]:
            del self._intents[name]
        return len(expired)

    async def health(self) -> bool:
        return True

    async def close(self) -> None:
        self._rows.clear()
        self._intents.clear()
