"""Counters that can say what is still held: for tests that a request path never leaks a reservation."""

from __future__ import annotations

from collections.abc import Sequence

from margin.storage.memory import MemoryCounters
from margin.storage.protocols import HOLD_SUFFIX, Charge, Verdict


class HoldTracker(MemoryCounters):
    """In-process counters that remember which counters took holds, so a test can ask how much is
    still held; closing keeps the rows (checks after an app's shutdown read them)."""

    def __init__(self) -> None:
        super().__init__()
        self.holding: set[str] = set()
        self.reservations = 0

    async def reserve(self, charges: Sequence[Charge]) -> Verdict:
        verdict = await super().reserve(charges)
        if verdict.admitted:
            self.reservations += 1
            self.holding.update(c.name for c in charges if c.hold is not None and c.amount > 0)
        return verdict

    async def held(self) -> int:
        """What every hold taken so far still holds, in the counters' units, summed."""
        return sum([await self.read(name + HOLD_SUFFIX, 0, 2**62) for name in sorted(self.holding)])

    async def close(self) -> None:
        return None
