"""The batch worker: one per replica, an asyncio task started by the app's lifespan, never on a
request's path. It leases chunks of lines, runs up to `batch.concurrency` lines at once through the
pipeline and writes each line's result as soon as it has one (the checkpoint); it also validates new
batches and finalises finished, expired and cancelled ones under a batch-level lease.

What a crash costs: a line whose result was written is never run again (the store writes a result
once and pending lines are read from the store); a line in flight when its worker died runs again
once the chunk's lease expires (or at once, when the next process on the same host sees the dead
process's id in the lease). Its first run's ledger rows are kept by the replica journal, so both
runs that went upstream are billed, and the output has the line once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import orjson

from margin.batch.backoff import Tier, TierBackoff
from margin.batch.finalize import Finalizer
from margin.batch.native_run import NativeRunner
from margin.batch.runner import BudgetPause, LineRunner, unrunnable
from margin.batch.schedule import OffPeak
from margin.batch.validate import Validator
from margin.config.batch import BatchConfig
from margin.errors import AuthError, MarginError
from margin.periodic import Periodic
from margin.storage.batches import BatchRecord, BatchStore, ChunkLease, Ending, LineSpec
from margin.storage.blobs import BlobNotFound, BlobStore
from margin.storage.protocols import StorageError

log = logging.getLogger("margin.batch")
PARKED_CHUNKS_FACTOR = 4
STATUS_FRESH_S = 0.5  # how stale a batch's status may be when a line is about to start


def new_owner() -> str:
    """`host:pid:random`: a successor on the same host can tell this process is gone."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def dead_here(owner: str, me: str) -> bool:
    """Whether `owner` was a process on this host that is no longer running."""
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit() or owner == me:
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True  # this process has the pid now: the owner that had it is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(slots=True)
class _Cached:
    record: BatchRecord
    read_at: float


class BatchWorker:
    def __init__(
        self,
        store: BatchStore,
        blobs: BlobStore,
        runner: LineRunner,
        validator: Validator,
        finalizer: Finalizer,
        settings: BatchConfig,
        *,
        clock: Callable[[], float],
        owner: str | None = None,
        load: Callable[[], int] | None = None,
        key_revoked: Callable[[str], Awaitable[bool]] | None = None,
        native: NativeRunner | None = None,
        tier_load: Callable[[Tier], int] | None = None,
        tier_of: Callable[[dict[str, Any]], Tier] | None = None,
    ) -> None:
        """`tier_load(tier)`: upstream calls open now on a tier's deployments (the batch's own
        included; `()`: the whole replica) and `tier_of(body)`: the tier a line's body is bound for;
        with `batch.yield_above_in_flight` (or a deployment's `yield_above_by_deployment`) set, the
        lines of each tier back off while interactive calls crowd that tier (backoff.py). `load`
        alone: upstream calls open on this replica, one back-off for every line.
        `key_revoked(key_id)`: whether the creator's key has been revoked since (its lines then fail
        with the 401 a live request would get)."""
        self.key_revoked = key_revoked
        self.native = native  # hands batches bound for one native deployment to its provider (native_run.py)
        self.store, self.blobs, self.runner = store, blobs, runner
        self.validator, self.finalizer, self.settings, self.clock = validator, finalizer, settings, clock
        self.owner = owner or new_owner()
        self._running = 0  # lines started and not finished
        self._slot_freed = asyncio.Event()
        self.off_peak = OffPeak(settings.windows)
        total = load or (lambda: 0)
        self.backoff = TierBackoff(settings, tier_load or (lambda _tier: total()), tier_of)
        self._max_chunks = math.ceil(settings.concurrency / settings.chunk_lines) + 1
        # A chunk whose every tier waits on its back-off does not count towards `_max_chunks`, so lines
        # bound for other tiers are found in further chunks (up to PARKED_CHUNKS_FACTOR times as many).
        self._tier_loops: dict[tuple[str, int], int] = {}  # chunk -> tiers its lines are bound for
        self._parked: Counter[tuple[str, int]] = Counter()  # chunk -> tiers of it waiting on the back-off
        self._chunks: dict[tuple[str, int], ChunkLease] = {}
        self._lost: set[tuple[str, int]] = set()
        self._halted: set[str] = set()  # batches this replica knows take no new line
        self._paused: dict[str, float] = {}  # batch -> until when this replica paused it (budget)
        self._cache: dict[str, _Cached] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._periodic = [  # each logs its own failures
            Periodic("batch-leases", self._renew_leases, self.settings.lease_s / 3),
            Periodic("batch-pressure", self._check_pressure, self.settings.pressure_check_s),
        ]
        self._closing = False

    # --- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            dead = [o for o in await self.store.lease_owners(self.clock()) if dead_here(o, self.owner)]
            if dead:
                log.info("batch: taking over the leases of %d dead process(es) on this host", len(dead))
                await self.store.release_owners(dead)
        except StorageError as exc:
            log.warning("batch: could not look for dead workers' leases: %s", exc)
        self._loops = [asyncio.create_task(self._loop(), name="batch-worker")]
        for loop in self._periodic:
            loop.start()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Start no new line, let the lines in flight finish (up to `grace_s`), give the leases back."""
        self._closing = True
        for task in self._loops:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._loops, *(loop.stop() for loop in self._periodic), return_exceptions=True)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def wake(self) -> None:
        """New work may be waiting (a batch was created, validated or cancelled here)."""
        self._wake.set()

    def halt(self, batch_id: str, halted: bool = True) -> None:
        """Start no new line of `batch_id` (it is being cancelled on this replica), or again."""
        if halted:
            self._halted.add(batch_id)
        else:
            self._halted.discard(batch_id)
        self._wake.set()

    # --- the loops ----------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while not self._closing:
            try:
                busy = await self._batch_work()
                busy = await self._claim_chunks() or busy
            except StorageError as exc:
                log.warning("batch: the store failed (%s); trying again in %.1fs", exc, self.settings.poll_s)
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
                self._wake.clear()

    async def _renew_leases(self) -> None:
        for key, lease in list(self._chunks.items()):
            try:
                if not await self.store.renew_chunk(lease, self.clock() + self.settings.lease_s):
                    log.warning("batch: lost the lease on %s chunk %d", lease.batch_id, lease.chunk_no)
                    self._lost.add(key)
            except StorageError as exc:
                log.warning("batch: could not renew a lease: %s", exc)

    async def _check_pressure(self) -> None:
        if self.backoff.adjust():
            self._slot_freed.set()

    # --- lines --------------------------------------------------------------------------------------
    async def _acquire_slot(self, tier: Tier, chunk: tuple[str, int]) -> None:
        while self._running >= self.settings.concurrency or not self.backoff.may_start(tier):
            self._slot_freed.clear()
            parked = self._running < self.settings.concurrency  # held back by its tier, not the replica
            if parked:
                self._parked[chunk] += 1
                self._wake.set()  # another chunk may hold lines for a tier with room
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_freed.wait(), self.settings.pressure_check_s)
            finally:
                if parked:
                    self._parked[chunk] -= 1
        self._running += 1
        self.backoff.started(tier)

    def _active_chunks(self) -> int:
        """Chunks held, less those whose every tier waits on its back-off."""
        return sum(1 for key in self._chunks if self._parked[key] < self._tier_loops.get(key, 1))

    def _release_slot(self, tier: Tier) -> None:
        self._running -= 1
        self.backoff.ended(tier)
        self._slot_freed.set()

    async def _claim_chunks(self) -> bool:
        claimed = False
        if not self.off_peak.open(self.clock()):
            return False
        while (
            not self._closing
            and self._active_chunks() < self._max_chunks
            and len(self._chunks) < self._max_chunks * PARKED_CHUNKS_FACTOR
        ):
            lease = await self.store.claim_chunk(self.owner, now=self.clock(), lease_s=self.settings.lease_s)
            if lease is None:
                break
            self._chunks[(lease.batch_id, lease.chunk_no)] = lease
            self._spawn(self._run_chunk(lease), f"batch-chunk-{lease.batch_id}-{lease.chunk_no}")
            claimed = True
        return claimed

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("batch: %s failed", task.get_name(), exc_info=task.exception())

    async def _run_chunk(self, lease: ChunkLease) -> None:
        key = (lease.batch_id, lease.chunk_no)
        done = False
        try:
            specs = await self.store.pending_lines(lease.batch_id, lease.chunk_no)
            if specs:
                await self._run_lines(lease, specs)
            done = not await self.store.pending_lines(lease.batch_id, lease.chunk_no)
        except (StorageError, BlobNotFound) as exc:
            log.warning("batch: chunk %d of %s stopped: %s", lease.chunk_no, lease.batch_id, exc)
        finally:
            self._chunks.pop(key, None)
            self._tier_loops.pop(key, None)
            self._parked.pop(key, None)
            lost = key in self._lost
            self._lost.discard(key)
            if not lost:
                with contextlib.suppress(StorageError):
                    await self.store.release_chunk(lease, done=done)
            self._wake.set()

    async def _run_lines(self, lease: ChunkLease, specs: list[LineSpec]) -> None:
        batch = await self._batch(lease.batch_id, fresh=True)
        if batch.paused is not None:  # a chunk was leased, so the pause is over: say so on the batch
            await self.store.update_batch(batch.batch_id, ["in_progress"], {"paused": None, "paused_until": None})
        if self.key_revoked is not None and await self.key_revoked(batch.owner):
            await self._fail_revoked(batch, specs)
            return
        file = await self.store.get_file(batch.input_file_id)
        first, last = specs[0], specs[-1]
        try:
            if file is None:
                raise BlobNotFound(batch.input_file_id)
            data = await self.blobs.read_range(file.blob, first.offset, last.offset + last.length - first.offset)
        except BlobNotFound:
            await self._fail_unreadable(batch, specs)
            return
        by_tier: dict[Tier, list[tuple[LineSpec, bytes]]] = {}
        for spec in specs:
            start = spec.offset - first.offset
            line = data[start : start + spec.length]
            by_tier.setdefault(self._tier(line), []).append((spec, line))
        # Each tier's lines start as its back-off allows: a crowded tier does not hold up the others.
        self._tier_loops[(lease.batch_id, lease.chunk_no)] = len(by_tier)
        starts = [self._start_lines(lease, batch, tier, lines) for tier, lines in by_tier.items()]
        running = [task for tasks in await asyncio.gather(*starts) for task in tasks]
        for outcome in await asyncio.gather(*running, return_exceptions=True):
            if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                log.error("batch: a line of %s failed inside margin", lease.batch_id, exc_info=outcome)

    def _tier(self, line: bytes) -> Tier:
        if not self.backoff.per_tier:
            return ()
        try:
            body = orjson.loads(line).get("body")
        except (orjson.JSONDecodeError, AttributeError):
            return ()  # validated already; a line that is not an object fails in the runner
        return self.backoff.tier_of(body) if isinstance(body, dict) else ()

    async def _start_lines(
        self, lease: ChunkLease, batch: BatchRecord, tier: Tier, lines: list[tuple[LineSpec, bytes]]
    ) -> list[asyncio.Task[None]]:
        running: list[asyncio.Task[None]] = []
        for spec, line in lines:
            await self._acquire_slot(tier, (lease.batch_id, lease.chunk_no))
            if not await self._may_start(lease):
                self._release_slot(tier)
                break
            running.append(asyncio.create_task(self._line(batch, spec, line, tier)))
        return running

    async def _fail_revoked(self, batch: BatchRecord, specs: list[LineSpec]) -> None:
        refused = AuthError("The API key that created this batch has been revoked.")
        for spec in specs:
            await self.store.finish_line(batch.batch_id, self.runner.refused(batch, spec, refused))

    async def _fail_unreadable(self, batch: BatchRecord, specs: list[LineSpec]) -> None:
        message = "The batch's input file was deleted before this request ran."
        for spec in specs:
            await self.store.finish_line(batch.batch_id, unrunnable(spec, "file_not_found", message, self.clock()))

    async def _line(self, batch: BatchRecord, spec: LineSpec, data: bytes, tier: Tier) -> None:
        try:
            result = await self.runner.run(batch, spec, data)
            if not await self.store.finish_line(batch.batch_id, result):
                log.info("batch: line %d of %s already had a result (or the batch ended)", spec.line_no, batch.batch_id)
        except BudgetPause as pause:
            await self._pause(batch, pause.message)
        finally:
            self._release_slot(tier)

    async def _pause(self, batch: BatchRecord, reason: str) -> None:
        until = self.clock() + self.settings.budget_pause_s
        self._paused[batch.batch_id] = until  # this replica's other chunks stop at once, before the store says so
        changes = {"paused": f"budget: {reason}"[:500], "paused_until": until}
        if await self.store.update_batch(batch.batch_id, ["in_progress"], changes):
            log.info("batch: %s paused until %.0f (budget)", batch.batch_id, until)
        self._cache.pop(batch.batch_id, None)

    async def _may_start(self, lease: ChunkLease) -> bool:
        if self._closing or (lease.batch_id, lease.chunk_no) in self._lost or lease.batch_id in self._halted:
            return False
        if not self.off_peak.open(self.clock()):
            return False  # the window closed: the chunk goes back, its lines wait for the next one
        if self._paused.get(lease.batch_id, 0.0) > self.clock():
            return False
        batch = await self._batch(lease.batch_id)
        now = self.clock()
        paused = batch.paused_until is not None and batch.paused_until > now
        return batch.status == "in_progress" and batch.ending is None and now < batch.expires_at and not paused

    async def _batch(self, batch_id: str, *, fresh: bool = False) -> BatchRecord:
        cached = self._cache.get(batch_id)
        now = self.clock()
        if fresh or cached is None or now - cached.read_at > STATUS_FRESH_S:
            record = await self.store.get_batch(batch_id)
            if record is None:
                raise StorageError(f"batch {batch_id} is gone")
            cached = self._cache[batch_id] = _Cached(record, now)
        return cached.record

    # --- batch-level work ---------------------------------------------------------------------------
    async def _batch_work(self) -> bool:
        record = await self.store.claim_batch(self.owner, now=self.clock(), lease_s=self.settings.lease_s)
        if record is None:
            return False
        held = False
        try:
            if record.status == "validating":
                await self._validate(record)
            else:
                held = not await self._try_finish(record)
        finally:
            if not held:
                await self.store.release_batch(record.batch_id, self.owner)
        return True

    def _keep_alive(self, batch_id: str) -> Callable[[], Awaitable[None]]:
        async def renew() -> None:
            await self.store.renew_batch(batch_id, self.owner, self.clock() + self.settings.lease_s)

        return renew

    async def _validate(self, record: BatchRecord) -> None:
        outcome = await self.validator.validate(record, self._keep_alive(record.batch_id))
        now = self.clock()
        if outcome.errors:
            changes = {"status": "failed", "failed_at": now, "errors": outcome.errors, "total": outcome.lines}
            await self.store.update_batch(record.batch_id, ["validating"], changes)
            log.info("batch: %s failed validation (%d errors)", record.batch_id, outcome.error_count)
        elif self.native is not None and (hold := await self._native_hold(record)) is not None:
            deployment, reserved = hold
            changes = {"status": "in_progress", "in_progress_at": now, "total": outcome.lines,
                       "native_deployment": deployment, "native_hold": reserved}  # fmt: skip
            if await self.store.update_batch(record.batch_id, ["validating"], changes):
                log.info("batch: %s goes native on %s (%d lines)", record.batch_id, deployment, outcome.lines)
            else:  # no longer validating (cancelled meanwhile): give the hold back
                self.native.backend.settle_native(reserved, Decimal(0), 0)
        elif await self.store.open_batch(record.batch_id, chunk_lines=self.settings.chunk_lines, now=now):
            log.info("batch: %s is in progress (%d lines)", record.batch_id, outcome.lines)
        self._wake.set()

    async def _native_hold(self, record: BatchRecord) -> tuple[str, dict[str, Any]] | None:
        """The native deployment and the budget hold of a batch that goes native; None: it runs
        `local` (no deployment takes it, or its worst case does not fit its creator's budgets)."""
        assert self.native is not None
        deployment = await self.native.choose(record)
        if deployment is None:
            return None
        reserved = await self.native.reserve(record, deployment)
        return None if reserved is None else (deployment, reserved)

    async def _try_finish(self, record: BatchRecord) -> bool:
        """Finalise `record` if no worker still runs its lines; False when it must wait (its lease
        is then held until the next look, so other batches are not blocked behind it)."""
        now = self.clock()
        if self._native_open(record):
            assert self.native is not None
            try:
                native_ending = await self.native.step(record)
            except MarginError as exc:  # the provider is down or refused: look again later
                log.warning("batch: %s, native on %s: %s", record.batch_id, record.native_deployment, exc.message)
                native_ending = None
            if native_ending is None:  # look again in native_poll_s (soon while cancelling)
                wait = self.settings.poll_s if record.status == "cancelling" else self.settings.native_poll_s
                await self.store.renew_batch(record.batch_id, self.owner, now + wait)
                return False
            if record.ending is None:  # every line has its result now: a look after a crash finalises
                record = replace(record, ending=native_ending)
                await self.store.update_batch(record.batch_id, [record.status], {"ending": native_ending})
        ending = record.ending or await self._ending(record, now)
        if record.status != "finalizing":
            if record.ending is None:
                await self.store.update_batch(record.batch_id, [record.status], {"ending": ending})
                self._cache.pop(record.batch_id, None)
            if await self.store.live_leases(record.batch_id, now) > 0:
                await self.store.renew_batch(record.batch_id, self.owner, now + self.settings.poll_s)
                return False
        if record.status == "in_progress":
            await self.store.update_batch(
                record.batch_id, ["in_progress"], {"status": "finalizing", "finalizing_at": now}
            )
        keep_alive = self._keep_alive(record.batch_id)
        if await self.finalizer.finalize(record, ending, keep_alive):
            log.info("batch: %s %s", record.batch_id, ending)
        self._halted.discard(record.batch_id)
        self._cache.pop(record.batch_id, None)
        return True

    def _native_open(self, record: BatchRecord) -> bool:
        """A native batch whose provider may still run lines (a cancel is forwarded and waited for)."""
        if record.native_deployment is None or self.native is None:
            return False
        return record.status == "cancelling" or (record.status == "in_progress" and record.ending is None)

    async def _ending(self, record: BatchRecord, now: float) -> Ending:
        if record.status == "cancelling":
            return "cancelled"
        if await self.store.unfinished_chunks(record.batch_id) == 0:
            return "completed"
        return "expired" if now >= record.expires_at else "completed"
