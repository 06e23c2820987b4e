"""One generation of the local model on a worker thread, read from the event loop.

The thread owns the slot for as long as it runs: it gives the slot back itself when its generation
returns (`SlotPool.release`, posted to the loop), so nothing the request does afterwards (a cancelled
`finally`, an abandoned async generator, a timeout) can leak the slot or free it while llama.cpp still
uses it. The request can only ask the thread to stop (`stop()`, which never awaits); the thread checks
between tokens. A reader that stops reading without saying so (its generator dropped and not yet
collected) is noticed too: when nothing posted was read for `reader_idle` seconds, the thread stops.

Generation stays off the event loop: the loop only moves finished items from the thread's hands.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from margin.providers.local_slots import Lease, SlotPool

log = logging.getLogger("margin.providers.local")

T = TypeVar("T")
# What a generation runs on its thread: the slot's model and the event to poll between tokens.
Produce = Callable[[Any, threading.Event], Iterator[T]]


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    """The worker ended with an error instead of an answer (`error` is None if it died unexpectedly)."""

    error: RuntimeError | ValueError | None


_END = object()


class Generation(Generic[T]):
    def __init__(
        self, pool: SlotPool, lease: Lease, produce: Produce[T], *, reader_idle: float, stoppable: bool = True
    ) -> None:
        """`stoppable`: does `produce` poll its stop event? One that cannot (a single uninterruptible
        llama.cpp call) is not asked to stop, so its slot is not declared stuck for finishing its
        work; the watchdog's `max_hold` still bounds it."""
        self._pool = pool
        self._lease = lease
        self._produce = produce
        self._reader_idle = reader_idle
        self._stoppable = stoppable
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._posted = 0  # written by the thread only
        self._taken = 0  # written by the loop only
        self._last_read = time.monotonic()

    def start(self, executor: Executor) -> None:
        """Hand the lease to a worker thread. Raises RuntimeError (slot given back) if the executor
        is shut down."""
        try:
            future = executor.submit(self._run)
        except RuntimeError:
            self._pool.release(self._lease)
            raise
        future.add_done_callback(_log_crash)

    def stop(self) -> None:
        """Ask the worker to stop at its next token; the slot comes back when it has. Never awaits."""
        if self._stoppable:
            self._lease.stop()

    async def next(self, timeout: float) -> T | WorkerFailed | None:
        """The next item, `WorkerFailed`, or None once the generation has ended.
        Raises TimeoutError when the worker produced nothing for `timeout` seconds."""
        try:
            item = self._queue.get_nowait()
        except asyncio.QueueEmpty:
            item = await asyncio.wait_for(self._queue.get(), max(0.0, timeout))
        self._taken += 1
        self._last_read = time.monotonic()
        if item is _END:
            return None
        result: T | WorkerFailed = item
        return result

    def _finish(self, outcome: object) -> None:
        """On the loop: the slot is free before the reader learns that the generation ended, so a
        request that follows this one never finds its slot still taken."""
        self._pool.release(self._lease)
        self._queue.put_nowait(outcome)

    # --- on the worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        stop = self._lease.stop_event
        outcome: object = WorkerFailed(None)  # unless the generation returns or fails in a known way
        try:
            for item in self._produce(self._lease.model, stop):
                self._post(item)
                if self._reader_gone():
                    stop.set()  # nobody reads what we write: stop at the next token
            outcome = _END
        except (RuntimeError, ValueError) as error:  # llama.cpp reports bad input and decode failures so
            outcome = WorkerFailed(error)
        finally:
            self._posted += 1
            self._post_to_loop(self._finish, outcome)

    def _post(self, item: object) -> None:
        self._posted += 1
        self._post_to_loop(self._queue.put_nowait, item)

    def _post_to_loop(self, callback: Callable[..., object], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed (shutdown): nobody is left to read or wait
            self._lease.stop_event.set()

    def _reader_gone(self) -> bool:
        unread = self._posted - self._taken
        return unread > 0 and time.monotonic() - self._last_read > self._reader_idle


def _log_crash(future: Future[None]) -> None:
    error = None if future.cancelled() else future.exception()
    if error is not None:
        log.error("local model worker crashed", exc_info=error)
