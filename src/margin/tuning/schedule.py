"""Training scheduled like batch work (docs/tuning.md, "Scheduling"): a lower priority than
interactive traffic (niceness), an optional off-peak window, one job per machine (an exclusive
lock on the data directory), and a per-job lock that says whether the job's worker is alive.

The locks are `flock`s: the kernel drops them when their process dies, `kill -9` included, so a
killed job never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from margin.tuning.errors import JobBusy
from margin.tuning.settings import TrainSettings, in_window

MACHINE_LOCK = "train.lock"  # under <data_dir>/tuning
JOB_LOCK = "run.lock"  # under the job's directory
POLL_S = 5.0


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on `path`, or None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _release(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def job_lock(job: Path) -> Iterator[None]:
    """Held by the job's worker while it runs; JobBusy when another worker has it."""
    fd = _try_lock(job / JOB_LOCK)
    if fd is None:
        raise JobBusy(f"job {job.name} is running (its worker holds {job / JOB_LOCK})")
    try:
        yield
    finally:
        _release(fd)


def worker_alive(job: Path) -> bool:
    fd = _try_lock(job / JOB_LOCK)
    if fd is None:
        return True
    _release(fd)
    return False


@contextmanager
def machine_slot(data_dir: Path, settings: TrainSettings, waiting: Callable[[str], None]) -> Iterator[None]:
    """One job per machine (settings.exclusive): wait for the data dir's lock, then hold it."""
    if not settings.exclusive:
        yield
        return
    path = data_dir / "tuning" / MACHINE_LOCK
    fd = _try_lock(path)
    if fd is None:
        waiting(f"waiting for another training job to finish (one job per machine: {path})")
    while fd is None:
        time.sleep(POLL_S)
        fd = _try_lock(path)
    try:
        yield
    finally:
        _release(fd)


def wait_for_window(
    settings: TrainSettings, waiting: Callable[[str], None], now: Callable[[], datetime] = datetime.now
) -> None:
    """Sleep until the off-peak window opens (no window: return at once)."""
    bounds = settings.window_bounds()
    if in_window(bounds, now().time()):
        return
    waiting(f"waiting for the off-peak window {settings.window} (local time)")
    while not in_window(bounds, now().time()):
        time.sleep(POLL_S)


def lower_priority(settings: TrainSettings) -> None:
    """Below interactive traffic: raise this process's niceness by settings.nice."""
    if settings.nice:
        os.nice(settings.nice)
