"""The ledger's local safety net: an append-only JSON-lines file of rows the store could not take.

`append` writes a batch and fsyncs it before returning. Replay works on a snapshot: `claim()` renames
the live file to `<name>.replaying` (or returns the one a previous run left unfinished), new rows go
to a fresh live file meanwhile, and `release()` deletes the snapshot once every row in it is stored.
A crash at any point leaves rows in one of the two files; replaying them twice is harmless because
the store skips attempt_ids it already has.

All methods are blocking file I/O, serialised by a lock: call them from a worker thread.

Several processes may share the file (`margin serve --workers N` on one data dir): an append, the
rename of a claim and the first count of lines hold an flock on `<name>.lock`, so a rename never
falls in the middle of another process's append and no count cuts a line being written; and one
process at a time replays, holding an flock on `<name>.replay-lock` from `claim` to `release`.
A process that finds another replaying leaves it the rows (its own included) and counts none.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import operator
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import fields
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from margin.storage.ledger_row import LedgerRow

log = logging.getLogger("margin.ledger")
_MONEY_FIELDS = frozenset(
    f.name for f in fields(LedgerRow) if f.name.startswith("cost_") or f.name in ("saved_cost", "routing_savings")
)


_FIELD_NAMES = tuple(f.name for f in fields(LedgerRow))
_FLOAT_FIELDS = operator.attrgetter(*(f.name for f in fields(LedgerRow) if "float" in str(f.type)))


def _decimal_text(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def row_to_json(row: LedgerRow) -> str:
    """One line of JSON; Decimals as exact strings. orjson writes the dataclass itself (several
    times faster than building a dict first; on the event loop for every journaled row), a row with
    a NaN or infinite float goes through the standard library, which keeps its spelling (orjson
    would write null), as does what orjson refuses."""
    if all(value is None or math.isfinite(value) for value in _FLOAT_FIELDS(row)):
        with contextlib.suppress(TypeError):
            return orjson.dumps(row, default=_decimal_text).decode()
    return json.dumps(_record(row), ensure_ascii=False, separators=(",", ":"))


def _record(row: LedgerRow) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for name in _FIELD_NAMES:
        value = getattr(row, name)
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        record[name] = value
    return record


def row_from_json(line: str) -> LedgerRow:
    return row_from_record(json.loads(line))


def row_from_record(record: dict[str, Any]) -> LedgerRow:
    """A row from `row_to_json`'s object, already parsed (the journal nests rows in its lines)."""
    record = dict(record)
    for name in _MONEY_FIELDS:
        record[name] = Decimal(record[name])
    record["tags"] = tuple(record["tags"])
    return LedgerRow(**record)


def _count_lines(path: Path) -> int:
    """Complete lines in `path`; a torn last line (a crash mid-append, never fsynced) is cut off."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    complete = data.rfind(b"\n") + 1
    if complete < len(data):
        log.warning("ledger spill %s: dropping a torn last line of %d bytes", path, len(data) - complete)
        with path.open("r+b") as stream:
            stream.truncate(complete)
            os.fsync(stream.fileno())
    return data.count(b"\n", 0, complete)


class SpillFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.replay_path = path.with_name(path.name + ".replaying")
        self.corrupt_lines = 0
        self._lock = threading.Lock()
        self._scanned = False
        self._live_rows = 0
        self._replay_rows = 0
        self._pending = 0  # one int, so the event loop can read it without taking the lock
        self._replay_lock: int | None = None  # the flock held from claim to release

    @contextlib.contextmanager
    def _files_locked(self) -> Iterator[None]:
        """Other processes' appends and renames wait (flock on `<name>.lock`)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _scan(self) -> None:
        if not self._scanned:
            with self._files_locked():
                self._live_rows = _count_lines(self.path)
                self._replay_rows = _count_lines(self.replay_path)
            self._pending = self._live_rows + self._replay_rows
            self._scanned = True

    def pending_rows(self) -> int:
        """Rows spilled and not yet released. The first call reads the files (do it on a worker
        thread); later calls only read a counter."""
        if not self._scanned:
            with self._lock:
                self._scan()
        return self._pending

    def append(self, rows: Sequence[LedgerRow]) -> None:
        """Append rows and fsync; on return they survive a crash."""
        if not rows:
            return
        payload = "".join(row_to_json(row) + "\n" for row in rows).encode()
        with self._lock:
            self._scan()
            with self._files_locked():
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    view = memoryview(payload)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
            self._live_rows += len(rows)
            self._pending += len(rows)

    def claim(self) -> Path | None:
        """The snapshot to replay: an unfinished one, else the live file renamed; None when empty, or
        when another process is replaying (it takes every row, this process's too)."""
        with self._lock:
            if not self._take_replay_lock():
                self._live_rows = self._replay_rows = self._pending = 0
                self._scanned = True
                return None
            with self._files_locked():  # what is on disk now, whoever wrote it
                self._live_rows = _count_lines(self.path)
                self._replay_rows = _count_lines(self.replay_path)
                self._pending, self._scanned = self._live_rows + self._replay_rows, True
                if not self._replay_rows and self._live_rows:
                    os.replace(self.path, self.replay_path)
                    self._replay_rows, self._live_rows = self._live_rows, 0
            if self._replay_rows:
                return self.replay_path
            self._drop_replay_lock()
            return None

    def _take_replay_lock(self) -> bool:
        if self._replay_lock is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(self.path.name + ".replay-lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._replay_lock = fd
        return True

    def _drop_replay_lock(self) -> None:
        if self._replay_lock is not None:
            os.close(self._replay_lock)
            self._replay_lock = None

    def read(self, path: Path, offset: int, max_rows: int) -> tuple[list[LedgerRow], int]:
        """Up to `max_rows` rows from byte `offset` of a claimed snapshot, and the next offset."""
        rows: list[LedgerRow] = []
        with path.open("rb") as stream:
            stream.seek(offset)
            while len(rows) < max_rows:
                line = stream.readline()
                if not line.endswith(b"\n"):
                    break
                offset += len(line)
                try:
                    rows.append(row_from_json(line.decode()))
                except (ValueError, KeyError, TypeError) as exc:
                    self.corrupt_lines += 1
                    log.error("ledger spill %s: unreadable line at byte %d skipped: %s", path, offset, exc)
        return rows, offset

    def release(self, path: Path) -> None:
        """Every row of the claimed snapshot is stored: delete it."""
        with self._lock:
            path.unlink(missing_ok=True)
            self._pending -= self._replay_rows
            self._replay_rows = 0
            self._drop_replay_lock()
