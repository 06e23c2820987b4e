"""margin.periodic.Periodic: when runs come, what a failed run does, and how stop ends the task."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from margin.periodic import Periodic


class Work:
    def __init__(self, fail: list[Exception | None] | None = None) -> None:
        self.runs = 0
        self.fail = list(fail or [])
        self.started = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        self.started.set()
        error = self.fail.pop(0) if self.fail else None
        if error is not None:
            raise error


async def _until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def test_the_first_run_comes_one_interval_after_start_unless_at_start() -> None:
    late, early = Work(), Work()
    after = Periodic("t-after", late, 10.0)
    now = Periodic("t-now", early, 10.0, at_start=True)
    after.start()
    now.start()
    await _until(lambda: early.runs == 1)
    assert late.runs == 0
    await asyncio.gather(after.stop(), now.stop())
    assert not after.running and not now.running


async def test_runs_repeat_every_interval_and_a_second_start_adds_no_task() -> None:
    work = Work()
    loop = Periodic("t-repeat", work, 0.01)
    loop.start()
    loop.start()
    await _until(lambda: work.runs >= 3)
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "t-repeat"]
    assert len(tasks) == 1
    await loop.stop()
    assert tasks[0].done()
    runs = work.runs
    await asyncio.sleep(0.05)
    assert work.runs == runs  # stopped for good


async def test_a_handled_error_is_reported_and_the_next_run_comes() -> None:
    seen: list[Exception] = []
    work = Work(fail=[KeyError("first"), None])
    loop = Periodic("t-handled", work, 0.01, handled=(LookupError,), on_error=seen.append)
    loop.start()
    await _until(lambda: work.runs >= 2)
    await loop.stop()
    assert [type(e) for e in seen] == [KeyError]


async def test_an_unhandled_error_ends_the_task_and_stop_raises_it() -> None:
    work = Work(fail=[RuntimeError("bug")])
    loop = Periodic("t-unhandled", work, 0.01, handled=(LookupError,), on_error=lambda exc: None, at_start=True)
    loop.start()
    await _until(lambda: work.runs == 1)
    await asyncio.sleep(0.05)
    assert work.runs == 1  # no second run
    with pytest.raises(RuntimeError, match="bug"):
        await loop.stop()


async def test_stop_cancels_a_run_in_flight() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loop = Periodic("t-slow", slow, 60.0, at_start=True)
    loop.start()
    await asyncio.sleep(0.01)
    async with asyncio.timeout(1):
        await loop.stop()
    assert cancelled.is_set()


def test_handling_errors_needs_someone_to_report_them() -> None:
    with pytest.raises(ValueError, match="on_error"):
        Periodic("t-bad", Work(), 1.0, handled=(Exception,))
