"""One background task that runs a coroutine every so many seconds, from `start` to `stop`.

The refreshers and sweepers beside the request path (the drains, teams and budgets, the intent
sweeper, the autoscaler, rollouts, drift re-evaluation, discovery, counter pruning, batch leases)
share this shape; what each one does with a failed run stays its own (`handled` and `on_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Periodic:
    """`work` every `every_s` seconds in one task named `name`.

    The first run comes one interval after `start`, or at once with `at_start=True`; the interval
    is slept after each run, so runs never overlap. An exception of a type in `handled` goes to
    `on_error` (which logs it, inside the `except` block, so `log.exception` has its traceback) and
    the next run comes on time; any other ends the task, and `stop` raises it. `stop` cancels the
    task where it awaits and waits for it to end.
    """

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        every_s: float,
        *,
        handled: tuple[type[Exception], ...] = (),
        on_error: Callable[[Exception], None] | None = None,
        at_start: bool = False,
    ) -> None:
        if handled and on_error is None:
            raise ValueError("a Periodic that handles errors needs on_error to report them")
        self.name = name
        self.work = work
        self.every_s = every_s
        self.handled = handled
        self.on_error = on_error
        self.at_start = at_start
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Start the task (on the running loop); a second start while it runs does nothing."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        if self.at_start:
            await self._run()
        while True:
            await asyncio.sleep(self.every_s)
            await self._run()

    async def _run(self) -> None:
        try:
            await self.work()
        except self.handled as exc:  # only the types the owner named; an empty tuple catches nothing
            assert self.on_error is not None
            self.on_error(exc)
