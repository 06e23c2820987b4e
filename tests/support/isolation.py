"""What other tenants see while one client misbehaves: how long the server's event loop was blocked
(an in-process probe) and how promptly a well-behaved neighbour, on its own thread, was answered."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from types import TracebackType

import httpx
import openai


class LoopLag:
    """Sleeps `tick_s` again and again on the loop under test: the most it ever woke late is the
    longest stretch the loop was busy with something else (every other request waited as long)."""

    def __init__(self, tick_s: float = 0.002) -> None:
        self.tick_s = tick_s
        self.worst_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run(), name="loop-lag-probe")
        await asyncio.sleep(self.tick_s * 2)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(self.tick_s)
            self.worst_s = max(self.worst_s, time.perf_counter() - started - self.tick_s)


class Neighbour:
    """A well-behaved tenant on its own thread: asks `ask(client)` back to back (with the official
    SDK) and `/healthz` between, and remembers the slowest answer and every failure."""

    def __init__(self, url: str, key: str, ask: Callable[[openai.OpenAI], object]) -> None:
        self.url, self.key, self.ask = url, key, ask
        self.answered = 0
        self.slowest_s = 0.0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="neighbour", daemon=True)

    async def __aenter__(self) -> Neighbour:
        """Started, and answered once (its client is built and connected) before the bad client runs."""
        self._thread.start()
        async with asyncio.timeout(30):
            while self.answered < 2 and not self.failures:
                await asyncio.sleep(0.01)
        self.answered, self.slowest_s = 0, 0.0
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        # Joined off the loop: the server under test runs on it and must finish the last request.
        await asyncio.to_thread(self._thread.join, 30)

    def _run(self) -> None:
        client = openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, max_retries=0, timeout=30)
        with client, httpx.Client(base_url=self.url, timeout=30) as plain:
            while not self._stop.is_set():
                for call in (lambda: self.ask(client), lambda: plain.get("/healthz").raise_for_status()):
                    started = time.perf_counter()
                    try:
                        call()  # type: ignore[no-untyped-call]
                    except (openai.OpenAIError, httpx.HTTPError) as error:
                        self.failures.append(repr(error))
                    else:
                        self.answered += 1
                    self.slowest_s = max(self.slowest_s, time.perf_counter() - started)
                time.sleep(0.005)
