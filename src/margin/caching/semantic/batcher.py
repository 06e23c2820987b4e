"""Dynamic micro-batching of embedding calls.

Concurrent lookups each need one embedding; a transformer on CPU embeds 32 short texts in one call
for less than 32 calls (per-call weight streaming and dispatch are paid once: ~1.7x fewer core-seconds
for MiniLM on an AVX2 core, where the rest is compute; see docs/caching.md). Requests wait at most
`window_s` for company, a batch closes early at `max_batch`, and while every worker is busy
requests keep accumulating, so batches grow with load instead of queueing one by one. What is
ready when workers are idle is split evenly among them, so a burst uses every worker (core).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from margin.embedding import Embedder, Matrix


class EmbeddingFailed(RuntimeError):
    """The embedder raised or was interrupted; the lookup that needed the vector is a miss."""


def _fail(waiting: Sequence[tuple[str, asyncio.Future[Matrix]]], error: BaseException) -> None:
    for _, future in waiting:
        if not future.done():
            future.set_exception(error)


class MicroBatcher:
    def __init__(self, embedder: Embedder, *, window_s: float = 0.003, max_batch: int = 32, workers: int = 1) -> None:
        self.embedder = embedder
        self.window_s = window_s
        self.max_batch = max_batch
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="margin-embed")
        self._pending: list[tuple[str, asyncio.Future[Matrix]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._window_over = False
        self._busy = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # embed calls made (for tests and metrics)
        self.texts = 0

    async def embed(self, text: str) -> Matrix:
        """The unit vector of `text`, embedded together with whatever else arrives meanwhile."""
        future: asyncio.Future[Matrix] = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        idle = self.workers - self._busy
        ready = self._window_over or len(self._pending) >= self.max_batch or self.window_s <= 0
        if self._pending and idle > 0 and ready:
            self._start_batches(idle)
        if not self._pending:
            self._window_over = False
            self._cancel_timer()
        elif self._timer is None and not self._window_over:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self._window_closed)

    def _start_batches(self, idle: int) -> None:
        """Split what is ready evenly among the idle workers (32 ready, 2 idle: 16 each) rather than
        handing it all to one while another core sits idle: a single-threaded embedder only uses the
        core its worker runs on. More than they can take waits for the next free worker."""
        take = min(len(self._pending), idle * self.max_batch)
        size = -(-take // min(idle, take))
        ready, self._pending = self._pending[:take], self._pending[take:]
        loop = asyncio.get_running_loop()
        for start in range(0, take, size):
            self._busy += 1
            task = loop.create_task(self._run(ready[start : start + size]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _window_closed(self) -> None:
        self._timer = None
        self._window_over = True
        self._dispatch()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _run(self, batch: Sequence[tuple[str, asyncio.Future[Matrix]]]) -> None:
        live = [(text, future) for text, future in batch if not future.done()]  # skip cancelled callers
        unique = list(dict.fromkeys(text for text, _ in live))
        try:
            if unique:
                loop = asyncio.get_running_loop()
                vectors = await loop.run_in_executor(self._executor, self.embedder.embed, unique)
                self.batches += 1
                self.texts += len(unique)
                row = {text: vectors[i] for i, text in enumerate(unique)}
                for text, future in live:
                    if not future.done():
                        future.set_result(row[text])
        except (RuntimeError, ValueError, OSError, MemoryError) as error:
            _fail(live, error)
        finally:
            # Whatever happened (even cancellation), no caller is left waiting forever.
            _fail(live, EmbeddingFailed("the embedding batch did not complete"))
            self._busy -= 1
            self._dispatch()

    async def close(self) -> None:
        self._cancel_timer()
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)
