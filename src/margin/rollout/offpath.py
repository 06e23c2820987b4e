"""A bounded queue of work beside the request path (shadow calls, online grading): `submit` never
waits; when the queue is full the job is dropped and the caller counts it. Workers run each job and
log (never raise) what a job's own failure was."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from margin.errors import MarginError
from margin.storage.protocols import StorageError

log = logging.getLogger("margin.rollout")
Job = TypeVar("Job")


class OffPathQueue(Generic[Job]):
    def __init__(self, run: Callable[[Job], Awaitable[None]], *, size: int, workers: int, name: str) -> None:
        self.run = run
        self.queue: asyncio.Queue[Job] = asyncio.Queue(size)
        self.workers = workers
        self.name = name
        self._tasks: list[asyncio.Task[None]] = []

    def submit(self, job: Job) -> bool:
        """Queue `job`; False (nothing queued) when the queue is full."""
        if not self._tasks:
            return False  # not started (or stopped): nothing would ever run it
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            return False
        return True

    async def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._work(), name=f"margin-{self.name}-{i}") for i in range(self.workers)
            ]

    async def stop(self, drain_s: float = 2.0) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                await self.queue.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _work(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self.run(job)
            except (MarginError, StorageError, ValueError, TypeError, KeyError, RuntimeError, OSError) as exc:
                # one job failed (a grader, an embedder, the store), not the worker
                log.warning("%s job failed: %s: %s", self.name, type(exc).__name__, exc)
            finally:
                self.queue.task_done()
