"""A store that fails on demand, and a wait helper, for the ledger unit tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence

from margin.storage import AuditEntry, CostChange, GroupBy, LedgerStore, ReportRow, StorageError
from margin.storage.ledger_row import LedgerRow


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class FlakyStore:
    """A real store behind switches: `down` raises, `hang` never answers, `lose_acks` commits a write
    and then raises as if the connection dropped before the acknowledgement."""

    def __init__(self, inner: LedgerStore) -> None:
        self.inner = inner
        self.down = False
        self.hang = False
        self.lose_acks = 0
        self.write_calls = 0

    async def write(self, rows: Sequence[LedgerRow]) -> None:
        self.write_calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.down:
            raise StorageError("store is down")
        await self.inner.write(rows)
        if self.lose_acks:
            self.lose_acks -= 1
            raise StorageError("connection lost before the commit was acknowledged")

    async def health(self) -> bool:
        return not (self.down or self.hang)

    async def migrate(self) -> list[str]:
        return await self.inner.migrate()

    async def count(self) -> int:
        return await self.inner.count()

    def query_rows(self, since: float, until: float, *, page_size: int = 500) -> AsyncIterator[LedgerRow]:
        return self.inner.query_rows(since, until, page_size=page_size)

    async def update_costs(self, changes: Sequence[CostChange]) -> None:
        await self.inner.update_costs(changes)

    async def spend_report(
        self, since: float, until: float, group_by: GroupBy, *, histograms: bool = True
    ) -> list[ReportRow]:
        return await self.inner.spend_report(since, until, group_by, histograms=histograms)

    async def record_audit(self, entry: AuditEntry) -> None:
        await self.inner.record_audit(entry)

    async def audit_log(self, limit: int = 100) -> list[AuditEntry]:
        return await self.inner.audit_log(limit)

    async def prune(self, before: float, *, batch_size: int = 5000) -> int:
        return await self.inner.prune(before, batch_size=batch_size)

    async def close(self) -> None:
        await self.inner.close()
