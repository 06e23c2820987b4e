"""Ledger rows off the request path: a bounded buffer, batched writes, and a spill file for outages.

    writer = LedgerWriter(store, SpillFile(data_dir / "ledger-spill.jsonl"))
    await writer.start()
    writer.submit(rows)          # never blocks, never raises on a full buffer
    await writer.stop()          # drains: every submitted row is in the store or the spill file

With a journal (margin.ledger.journal), `submit` appends the rows to it first, one write() that
survives the process being killed; they are acknowledged there once they are in the store or the
spill file, and a successor replays what was never acknowledged: rows waiting in this writer's
memory are not lost with the process.

A background task takes up to `batch_size` rows, or what arrived within `flush_interval_s` of the
first, and writes them to the store with a timeout. When the store fails or times out, that batch
and every later one goes to the spill file (fsync per batch) until a probe finds the store healthy
and the spill file has been replayed. Rows that find the buffer full are spilled directly. The
store skips attempt_ids it already has, so a batch that both reached the store and was spilled
(a commit whose acknowledgement was lost) is never counted twice: no row lost, none doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from margin.ledger.journal import Journal
from margin.ledger.spill import SpillFile
from margin.storage.ledger_row import LedgerRow
from margin.storage.protocols import LedgerStore, StorageError

log = logging.getLogger("margin.ledger")
T = TypeVar("T")
Entry = tuple[int, LedgerRow]  # the journal segment that holds the row, and the row


class LedgerWriter:
    def __init__(
        self,
        store: LedgerStore,
        spill: SpillFile,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval_s: float = 0.05,
        write_timeout_s: float = 5.0,
        probe_interval_s: float = 1.0,
        journal: Journal | None = None,
    ) -> None:
        self.store = store
        self.spill = spill
        self.journal = journal
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.write_timeout_s = write_timeout_s
        self.probe_interval_s = probe_interval_s
        # counters for metrics
        self.written_rows = 0  # reached the store directly
        self.spilled_rows = 0  # went to the spill file
        self.replayed_rows = 0  # reached the store from the spill file
        self.lost_rows = 0  # neither the store nor the disk would take them (logged as errors)
        self._buffer: deque[Entry] = deque()
        self._rows_ready = asyncio.Event()
        self._batch_ready = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopping = False
        self._store_up = True
        self._replay_offset: tuple[Path, int] | None = None
        self._spill_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="margin-ledger-spill")
        self._overflow: set[asyncio.Future[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def queue_depth(self) -> int:
        """Rows waiting in memory for the background task."""
        return len(self._buffer)

    @property
    def store_available(self) -> bool:
        """False from a failed write until the spill file has been replayed."""
        return self._store_up

    async def start(self) -> None:
        """Start the writer; rows a previous run left in the spill file are replayed first."""
        if self._tasks:
            return
        pending = await self._in_spill_thread(self.spill.pending_rows)
        if pending:
            log.warning("ledger: %d spilled rows from an earlier run will be replayed", pending)
            self._store_up = False
        self._tasks = [
            asyncio.create_task(self._drain(), name="margin-ledger-writer"),
            asyncio.create_task(self._recover(), name="margin-ledger-recovery"),
        ]

    def submit(self, rows: Sequence[LedgerRow]) -> None:
        """Queue rows for writing; rows that do not fit go to the spill file (on a worker thread).
        Call from the event loop's thread."""
        if not rows:
            return
        seq = self.journal.rows(rows) if self.journal is not None else 0
        entries = [(seq, row) for row in rows]
        room = max(self.max_queue - len(self._buffer), 0)
        self._buffer.extend(entries[:room])
        if len(entries) > room:
            self._spill_in_background(entries[room:])
        if self._buffer:
            self._rows_ready.set()
            if len(self._buffer) >= self.batch_size:
                self._batch_ready.set()

    async def stop(self) -> None:
        """Write or spill every queued row, try one last replay, then stop the background tasks."""
        self._stopping = True
        self._stop_requested.set()
        self._rows_ready.set()
        self._batch_ready.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []
        if self._overflow:
            await asyncio.gather(*self._overflow, return_exceptions=True)
        if await self._in_spill_thread(self.spill.pending_rows):
            await self._replay_if_healthy()
        self._spill_thread.shutdown(wait=True)

    # -- the writing task

    async def _drain(self) -> None:
        while True:
            await self._rows_ready.wait()
            if not self._buffer:
                if self._stopping:
                    return
                self._rows_ready.clear()
                continue
            if len(self._buffer) < self.batch_size and not self._stopping:
                with contextlib.suppress(TimeoutError):  # waiting on an Event: nothing is lost on timeout
                    await asyncio.wait_for(self._batch_ready.wait(), self.flush_interval_s)
            batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
            if not self._stopping:
                if len(self._buffer) < self.batch_size:
                    self._batch_ready.clear()
                if not self._buffer:
                    self._rows_ready.clear()
            await self._deliver(batch)

    async def _deliver(self, batch: list[Entry]) -> None:
        rows = [row for _, row in batch]
        if self._store_up and not self.spill.pending_rows():
            if await self._write(rows):
                self.written_rows += len(rows)
                self._acknowledge(batch)
                return
            self._store_up = False
        if await self._spill_now(rows):
            self._acknowledge(batch)

    def _acknowledge(self, batch: list[Entry]) -> None:
        """The batch is in the store or the spill file: the journal no longer needs it."""
        if self.journal is not None and self.journal.is_open:
            self.journal.stored(Counter(seq for seq, _ in batch))

    async def _write(self, rows: list[LedgerRow]) -> bool:
        try:
            await asyncio.wait_for(self.store.write(rows), self.write_timeout_s)
        except (StorageError, TimeoutError) as exc:
            log.warning("ledger: store write of %d rows failed (%s); spilling to %s", len(rows), exc, self.spill.path)
            return False
        except Exception:  # a driver bug or an unmapped error must not lose the batch: spilled
            # The one broad except, the spill safety net: an unexpected store error (a driver bug, an
            # unmapped error class) must neither lose the batch nor kill the writer: it is spilled and replayed.
            log.exception("ledger: unexpected error writing %d rows; spilling them", len(rows))
            return False
        return True

    async def _spill_now(self, rows: list[LedgerRow]) -> bool:
        """True once the rows are in the spill file (or the store); False when they were lost."""
        while True:
            try:
                await self._in_spill_thread(self.spill.append, rows)
            except OSError as exc:
                if self._stopping:
                    self.lost_rows += len(rows)
                    log.error("ledger: %d rows not stored: store down and spill file unwritable (%s)%s", len(rows),
                              exc, "; the journal keeps them" if self.journal is not None else "")  # fmt: skip
                    return False
                log.error("ledger: cannot write spill file %s (%s); retrying", self.spill.path, exc)
                await asyncio.sleep(self.probe_interval_s)
                if self._store_up and await self._write(rows):
                    self.written_rows += len(rows)
                    return True
                continue
            self.spilled_rows += len(rows)
            return True

    def _spill_in_background(self, entries: list[Entry]) -> None:
        async def spill() -> None:
            if await self._spill_now([row for _, row in entries]):
                self._acknowledge(entries)

        future = asyncio.ensure_future(spill())
        self._overflow.add(future)
        future.add_done_callback(self._overflow.discard)

    async def _in_spill_thread(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._spill_thread, fn, *args)

    # -- the recovery task

    async def _recover(self) -> None:
        while not self._stopping:
            if not self._store_up or self.spill.pending_rows():
                await self._replay_if_healthy()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_requested.wait(), self.probe_interval_s)

    async def _replay_if_healthy(self) -> bool:
        """Replay every spilled row if the store answers; True when the spill file is empty."""
        try:
            healthy = await asyncio.wait_for(self.store.health(), self.write_timeout_s)
        except TimeoutError:
            healthy = False
        if not healthy:
            return False
        while True:
            path = await self._in_spill_thread(self.spill.claim)
            if path is None:
                if not self._store_up:
                    log.info("ledger: store is back; spill file replayed")
                self._store_up = True
                return True
            if not await self._replay_file(path):
                self._store_up = False
                return False

    async def _replay_file(self, path: Path) -> bool:
        offset = self._replay_offset[1] if self._replay_offset and self._replay_offset[0] == path else 0
        while True:
            rows, next_offset = await self._in_spill_thread(self.spill.read, path, offset, self.batch_size)
            if not rows and next_offset == offset:
                break
            if rows and not await self._write(rows):
                return False
            self.replayed_rows += len(rows)
            offset = next_offset
            self._replay_offset = (path, offset)
        await self._in_spill_thread(self.spill.release, path)
        self._replay_offset = None
        return True
