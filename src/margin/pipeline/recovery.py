"""What a replica does with what a dead one left: on start, the journals on its data dir whose
process is gone (a restarted pod, a crashed process); while running, the orphaned reservations a
surviving replica swept from the shared store.

Per request found in a dead replica's journal:

| its rows reached the journal | attempts started | reservation not yet settled becomes      | rows written            |
| yes                          | any              | settled at the rows' actual cost         | the journaled rows      |
| no                           | some             | swept: spent at the reserved amount      | one `unreconciled` each |
| no                           | none             | released (provably nothing went upstream)| none                    |

Every step is idempotent (rows are keyed by attempt_id, the counters move through the intent's
state), so a replay cut short by another crash is simply done again by the next start.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from margin.budgets.admission import Limiter
from margin.budgets.estimate import nano_ceil
from margin.budgets.intents import HeldCounter, Reservation, late_plans, release_plan, spent_plan
from margin.budgets.sweeper import KEEP_SWEPT_S
from margin.ledger.journal import Adopted, Journal
from margin.ledger.journal_replay import JournalContents, Trace, read_journal
from margin.ledger.unreconciled import unreconciled_rows
from margin.ledger.writer import LedgerWriter
from margin.storage.ledger_row import LedgerRow
from margin.storage.protocols import Adjust, IntentCounters, IntentState, Orphan, StorageError

log = logging.getLogger("margin.ledger")
_RETRY_S = 5.0
WHY_DIED = "the replica serving it died before the outcome was recorded"


@dataclass(slots=True)
class ReplayResult:
    rows: int = 0  # journaled rows handed to the writer again
    unreconciled: int = 0  # rows written for attempts whose outcome is unknown
    settled: int = 0  # reservations settled at their actual cost
    swept: int = 0  # reservations settled as spent at the reserved amount
    released: int = 0  # reservations released: nothing went upstream


class Recovery:
    def __init__(self, journal: Journal | None, writer: LedgerWriter, limiter: Limiter | None) -> None:
        self.journal = journal
        self.writer = writer
        self.limiter = limiter
        self.replayed: list[ReplayResult] = []
        self._retry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open this replica's journal and replay every dead one's found beside it."""
        if self.journal is None:
            return  # switched off (metering.journal: false)
        await asyncio.to_thread(self.journal.open)
        for adopted in await asyncio.to_thread(self.journal.adopt):
            await self._replay_or_retry(adopted)

    async def stop(self) -> None:
        """After the writer stopped: close the journal (its files go when nothing in them is needed)."""
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
            self._retry = None
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)

    async def _replay_or_retry(self, adopted: Adopted) -> None:
        try:
            self.replayed.append(await self.replay(adopted))
        except StorageError as exc:
            log.warning("journal of replica %s: counters unreachable (%s); retrying every %.0fs", adopted.owner,
                        exc, _RETRY_S)  # fmt: skip
            self._retry = asyncio.create_task(self._retry_loop(adopted), name="margin-journal-replay")

    async def _retry_loop(self, adopted: Adopted) -> None:
        while True:
            await asyncio.sleep(_RETRY_S)
            try:
                self.replayed.append(await self.replay(adopted))
                return
            except StorageError as exc:
                log.warning("journal of replica %s: replay still waiting for the counters: %s", adopted.owner, exc)

    async def replay(self, adopted: Adopted) -> ReplayResult:
        """Rows to the writer (journaled again, here), reservations settled, the old journal deleted.
        Raises StorageError, with nothing deleted, when the counter store does not answer."""
        contents = await asyncio.to_thread(read_journal, adopted.segments)
        result = ReplayResult(rows=len(contents.rows))
        rows = list(contents.rows.values())
        for trace in contents.traces.values():
            rows.extend(await self._conclude(trace, contents, adopted.owner, result))
        self.writer.submit(rows)
        if self.journal is not None:
            self.journal.flush()  # the rows are in this journal before the dead one goes
        await asyncio.to_thread(Journal.release, adopted)
        log.warning(
            "journal of dead replica %s replayed: %d rows, %d unreconciled; reservations %d settled, %d swept, "
            "%d released", adopted.owner, result.rows, result.unreconciled, result.settled, result.swept,
            result.released,
        )  # fmt: skip
        return result

    async def _conclude(
        self, trace: Trace, contents: JournalContents, owner: str, result: ReplayResult
    ) -> list[LedgerRow]:
        """The request's missing rows, after settling its reservation by the table above."""
        res = trace.reservation
        counters = tuple(HeldCounter.from_json(c) for c in res["counters"]) if res else ()
        if trace.ended:
            cost, tokens = contents.spent(trace.request_id)
            if await self._finish(trace, owner, late_plans(counters, nano_ceil(cost), tokens), "settled"):
                result.settled += 1
            return []
        attempts = [trace.attempts[i] for i in sorted(trace.attempts)]
        if not attempts:
            if await self._finish(trace, owner, {"open": release_plan(counters)}, "released"):
                result.released += 1
            return []
        if await self._finish(trace, owner, {"open": spent_plan(counters)}, "swept"):
            result.swept += 1
        cost_nano = res.get("cost_nano") if res else None
        rows = unreconciled_rows(trace.fields, attempts, None if cost_nano is None else int(cost_nano), why=WHY_DIED)
        result.unreconciled += len(rows)
        return rows

    async def _finish(
        self, trace: Trace, owner: str, plans: Mapping[IntentState, Sequence[Adjust]], to: IntentState
    ) -> bool:
        """Move the reservation's intent; True when this call applied a plan."""
        store = self.limiter.counters if self.limiter is not None else None
        if not trace.intent or trace.settled or not isinstance(store, IntentCounters):
            return False
        assert self.limiter is not None
        keep = self.limiter.clock() + KEEP_SWEPT_S
        found = await store.finish(trace.request_id, owner, plans, to, keep)
        return found is not None and found in plans

    async def swept(self, orphan: Orphan, reservation: Reservation) -> None:
        """A reservation this replica swept for a dead owner: write its attempts' rows."""
        attempts: list[dict[str, Any]] = [json.loads(mark) for mark in orphan.attempts]
        self.writer.submit(unreconciled_rows(reservation.row, attempts, reservation.cost_nano, why=WHY_DIED))
