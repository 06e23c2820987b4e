"""The replica's journal: a local append-only file that makes each request's money and rows outlive
the process.

What goes in, before the thing it protects can be lost:
- `req`: a request's reservation (its counters, worst case and who asked), or, for a request no
  limit applies to, who asked; written when the reservation is made, before any upstream attempt;
- `att`: an upstream attempt about to start; written before it goes upstream;
- `rows`: ledger rows handed to the ledger writer, before they wait in its memory;
- `set`: the reservation was settled in the counter store;
- `end`: the request's rows (possibly none) are in the journal.

Group commit: lines go to the O_APPEND descriptor in `os.write()`s of whole lines; once one
returns, its lines are in the kernel's page cache and survive the process being killed (SIGKILL,
OOM). An `att` line is written at once, with every line still pending (of any request), before the
attempt goes upstream; the other lines wait for the end of the event-loop iteration that produced
them (`loop.call_soon`: before the loop waits for I/O again, before any callback scheduled after
them, so before the ledger writer's task can take the rows), and every line of that iteration goes
in one write(). `flush()` writes what is pending at once. Called with no running loop, every line
is written at once. A background thread fsyncs the live segment every `fsync_interval_s` when it
has new lines, so a power loss or kernel crash loses at most that interval's lines (the one window
left; docs/ledger.md).

Segments: `<owner>.<seq>.jsonl`, next to `<owner>.lock`, which the process holds (flock) for its
life. When the live segment passes `segment_bytes` a new one starts with the lines of every request
still open carried forward; a sealed segment is deleted once every row it holds is in the store
(or the spill file) and the segment that carried its open requests forward has been fsynced. A
process that starts finds the segments of owners whose lock is free (a replica that died) and
replays them (margin.pipeline.recovery), then deletes them.

All methods but `adopt` and `read_lines` are called from the event loop's thread; they never block
on the disk beyond a write() into the page cache.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from margin.ledger.spill import row_to_json
from margin.storage.ledger_row import LedgerRow

log = logging.getLogger("margin.ledger")
SEGMENT_BYTES = 8 * 1024 * 1024
FSYNC_INTERVAL_S = 0.05


@dataclass(slots=True)
class _Open:
    """A request the journal still needs: its lines, carried into each new segment until it is done."""

    lines: list[bytes] = field(default_factory=list)
    reserved: bool = False
    settled: bool = False
    ended: bool = False

    @property
    def done(self) -> bool:
        return self.ended and (self.settled or not self.reserved)


@dataclass(frozen=True, slots=True)
class Adopted:
    """A dead replica's journal: its segments in order, and the lock this process now holds on it."""

    owner: str
    segments: tuple[Path, ...]
    lock_fd: int
    lock_path: Path


def _line(record: Mapping[str, Any]) -> bytes:
    """One journal line. orjson (several times faster; its floats here are clock readings, always
    finite), the standard library for what orjson refuses (non-string keys, huge integers)."""
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


class Journal:
    def __init__(
        self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES, fsync_interval_s: float = FSYNC_INTERVAL_S
    ) -> None:
        self.directory = directory
        self.owner = uuid.uuid4().hex[:12]  # this process's id, also its owner id on shared intents
        self.segment_bytes = segment_bytes
        self.fsync_interval_s = fsync_interval_s
        self.fsyncs = 0  # counters for metrics and the bench
        self.lines_written = 0
        self.writes = 0  # write() calls: fewer than lines, by the group commit
        self._lock = threading.Lock()  # the live descriptor, the retired ones and the deletable paths
        self._fd = -1
        self._lock_fd = -1
        self._seq = 0
        self._size = 0
        self._dirty = False
        self._pending: list[bytes] = []  # lines of this loop iteration, not yet written
        self._flush_scheduled = False
        self._open: dict[str, _Open] = {}
        self._unstored: dict[int, int] = {}  # segment -> rows in it not yet in the store
        self._sealed: set[int] = set()
        self._retired: list[tuple[int, list[Path]]] = []  # fds to fsync+close, then paths to delete
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life -----------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    def open(self) -> None:
        """Blocking (call before serving, or on a worker thread): lock this owner, start a segment."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_path = self.directory / f"{self.owner}.lock"
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd = self._new_segment(self._seq)
        self._thread = threading.Thread(target=self._sync_loop, name="margin-journal-fsync", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Blocking: fsync, stop the thread; the files go when nothing in them is still needed."""
        if not self.is_open:
            return
        self._stopping.set()
        self._wakeup.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()
        with self._lock:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
        if not self._open and not any(self._unstored.values()):
            for path in self.directory.glob(f"{self.owner}.*.jsonl"):
                path.unlink(missing_ok=True)
            (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)
        os.close(self._lock_fd)  # closing releases the flock: a successor may adopt what is left
        self._lock_fd = -1

    def _path(self, seq: int, owner: str | None = None) -> Path:
        return self.directory / f"{owner or self.owner}.{seq:06d}.jsonl"

    def _new_segment(self, seq: int) -> int:
        return os.open(self._path(seq), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    # --- what goes in ------------------------------------------------------------------------------

    def begin(self, request_id: str, record: Mapping[str, Any], *, reserved: bool) -> None:
        """A request's `req` line (its reservation, or who asked); once per request."""
        if request_id in self._open:
            return
        entry = self._open[request_id] = _Open(reserved=reserved)
        self._append(entry, _line({"k": "req", "id": request_id, **record}))

    def started(self, request_id: str) -> bool:
        return request_id in self._open

    def attempt(self, request_id: str, mark: Mapping[str, Any]) -> None:
        """Written at once, with every pending line: the attempt goes upstream next."""
        entry = self._open.get(request_id)
        if entry is not None:
            self._append(entry, _line({"k": "att", "id": request_id, **mark}))
            self.flush()

    def settled(self, request_id: str) -> None:
        entry = self._open.get(request_id)
        if entry is None:
            return
        entry.settled = True
        self._append(entry, _line({"k": "set", "id": request_id}))
        self._forget_if_done(request_id, entry)

    def ended(self, request_id: str) -> None:
        """The request's rows are in the journal (or it has none): it needs nothing more from it."""
        entry = self._open.get(request_id)
        if entry is None:
            return
        entry.ended = True
        self._append(entry, _line({"k": "end", "id": request_id}))
        self._forget_if_done(request_id, entry)

    def rows(self, rows: Sequence[LedgerRow]) -> int:
        """Journal rows for the ledger writer; returns the segment to acknowledge them against."""
        if not rows:
            return self._seq
        payload = '{"k":"rows","rows":[' + ",".join(row_to_json(row) for row in rows) + "]}\n"
        self._enqueue(payload.encode())
        seq = self._seq  # rotation happens after a write, so the pending lines go to this segment
        self._unstored[seq] = self._unstored.get(seq, 0) + len(rows)
        return seq

    def stored(self, counts: Mapping[int, int]) -> None:
        """`counts[seq]` rows of segment `seq` are in the store (or the spill file)."""
        for seq, n in counts.items():
            left = self._unstored.get(seq, 0) - n
            self._unstored[seq] = max(left, 0)
            if left <= 0 and seq in self._sealed:
                self._retire_segment(seq)

    def open_requests(self) -> int:
        return len(self._open)

    # --- writing -----------------------------------------------------------------------------------

    def _append(self, entry: _Open, line: bytes) -> None:
        entry.lines.append(line)
        self._enqueue(line)

    def _enqueue(self, line: bytes) -> None:
        """Pending until the end of this loop iteration (or the next `flush()`); at once without a
        running loop."""
        if not self.is_open:
            raise RuntimeError("the journal is not open")
        self._pending.append(line)
        self.lines_written += 1
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_soon(self._flush_scheduled_lines)

    def _flush_scheduled_lines(self) -> None:
        self._flush_scheduled = False
        if self._pending and self.is_open:
            self.flush()

    def flush(self) -> None:
        """Write every pending line now, in one write()."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._write(data)

    def _forget_if_done(self, request_id: str, entry: _Open) -> None:
        if entry.done:
            del self._open[request_id]

    def _write(self, data: bytes) -> int:
        """One write() of whole lines; returns the segment they went to."""
        if not self.is_open:
            raise RuntimeError("the journal is not open")
        with self._lock:
            _write_all(self._fd, data)
            self._size += len(data)
            self._dirty = True
            seq = self._seq
        self.writes += 1
        if self._size >= self.segment_bytes:
            self._rotate()
        return seq

    def _rotate(self) -> None:
        """Start the next segment with every open request's lines; seal the current one."""
        carried = b"".join(line for entry in self._open.values() for line in entry.lines)
        with self._lock:
            old_fd, old_seq = self._fd, self._seq
            self._seq += 1
            self._fd = self._new_segment(self._seq)
            _write_all(self._fd, carried)
            self._size = len(carried)
            self._retired.append((old_fd, []))
        self._sealed.add(old_seq)
        if not self._unstored.get(old_seq):
            self._retire_segment(old_seq)
        self._wakeup.set()

    def _retire_segment(self, seq: int) -> None:
        """Delete segment `seq` once the segment that carried its open requests is fsynced."""
        self._sealed.discard(seq)
        self._unstored.pop(seq, None)
        with self._lock:
            self._retired.append((-1, [self._path(seq)]))
        self._wakeup.set()

    # --- the fsync thread ----------------------------------------------------------------------------

    def _sync_loop(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.wait(self.fsync_interval_s)
            self._wakeup.clear()
            self._sync_logged()
        self._sync_logged()  # what the last round left (retired segments, deletions)

    def _sync_logged(self) -> None:
        try:
            self._sync_once()
        except OSError as exc:  # a full or failing disk: logged, retried on the next round
            log.error("journal %s: fsync failed: %s", self.directory, exc)

    def _sync_once(self) -> None:
        with self._lock:
            fd, dirty, retired = self._fd, self._dirty, self._retired
            self._dirty, self._retired = False, []
        for old_fd, _ in retired:
            if old_fd >= 0:
                os.fsync(old_fd)
                os.close(old_fd)
        if dirty or retired:
            os.fsync(fd)  # a concurrent rotation retires `fd` only through this thread: still open
            self.fsyncs += 1
        for _, paths in retired:
            for path in paths:
                path.unlink(missing_ok=True)

    # --- finding a dead replica's journal ------------------------------------------------------------

    def adopt(self) -> list[Adopted]:
        """Blocking: the journals of owners whose lock is free (their process is gone), locked by us."""
        found = []
        owners = {p.name.split(".", 1)[0] for p in self.directory.glob("*.jsonl")} - {self.owner}
        for owner in sorted(owners):
            lock_path = self.directory / f"{owner}.lock"
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # alive: another process on this data dir
                continue
            segments = tuple(sorted(self.directory.glob(f"{owner}.*.jsonl")))
            found.append(Adopted(owner, segments, fd, lock_path))
        return found

    @staticmethod
    def release(adopted: Adopted) -> None:
        """Blocking: everything in a dead replica's journal is now in ours, the store or the counters."""
        for path in adopted.segments:
            path.unlink(missing_ok=True)
        adopted.lock_path.unlink(missing_ok=True)
        os.close(adopted.lock_fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_lines(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Every complete, readable record of `paths` in order. A torn last line (the process died in
    the middle of a write, or the power went before an fsync) is skipped, as is a line that does not
    parse (logged): the journal is read to rebuild what it can, never to refuse to start."""
    for path in paths:
        data = path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            log.warning("journal %s: ignoring a torn last line of %d bytes", path, len(data) - complete)
        for number, raw in enumerate(data[:complete].splitlines(), start=1):
            try:
                record = json.loads(raw)
            except ValueError as exc:
                log.error("journal %s: unreadable line %d skipped: %s", path, number, exc)
                continue
            if isinstance(record, dict) and "k" in record:
                yield record
