"""IdleWatch: one timer per stream bounds every wait, like asyncio.timeout around each one would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from margin.resilience.idle_watch import IdleWatch, WentIdle


async def paced(gaps: list[float]) -> AsyncIterator[int]:
    for i, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        yield i


async def read(watch: IdleWatch, stream: AsyncIterator[int], pause: float = 0.0) -> list[int]:
    got: list[int] = []
    while (item := await watch.next(stream)) is not None:
        got.append(item)
        await asyncio.sleep(pause)  # the consumer's own time between waits
    return got


async def test_a_steady_stream_longer_than_the_bound_is_never_cut() -> None:
    watch = IdleWatch(0.1)
    assert await read(watch, paced([0.02] * 20)) == list(range(20))  # 0.4 s in all, no gap over 0.1 s
    watch.close()


async def test_a_gap_over_the_bound_is_cut_at_the_bound() -> None:
    watch = IdleWatch(0.1)
    started = time.monotonic()
    with pytest.raises(WentIdle):
        await read(watch, paced([0.01, 0.01, 5.0]))
    assert 0.1 <= time.monotonic() - started < 0.3
    watch.close()


async def test_the_consumers_own_time_does_not_count() -> None:
    watch = IdleWatch(0.05)
    assert await read(watch, paced([0.0] * 4), pause=0.12) == [0, 1, 2, 3]
    watch.close()


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    watch = IdleWatch(0.2)
    task = asyncio.create_task(read(watch, paced([5.0])))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    watch.close()


async def test_a_timeout_leaves_the_task_uncancelled() -> None:
    watch = IdleWatch(0.05)
    with pytest.raises(WentIdle):
        await read(watch, paced([1.0]))
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0
    await asyncio.sleep(0.01)  # the task can go on awaiting
    watch.close()
