"""Budget alerts: a soft threshold crossed (or a hard limit refusing requests) is logged at once and
POSTed as JSON to the configured webhook by a background task, retried with backoff.

De-duplication is per scope, threshold and window, across replicas: the first replica to claim the
alert in the shared counters (a limit-1 counter in the window's bucket) sends it, the others don't.
A local memo spares the store round trip for alerts this replica already knows were sent."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import orjson

log = logging.getLogger("margin.budgets")
_MAX_QUEUE = 1000
Sender = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Alert:
    scope: str
    kind: str  # usd | tokens
    window: str
    window_bucket: int
    threshold: str  # "0.8", or "blocked" when the hard limit refused a request
    used: str
    limit: str
    reset_at: str
    at: str

    def payload(self) -> bytes:
        return orjson.dumps({"type": "margin.budget_alert", **asdict(self)})


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def webhook_sender(url: str, *, timeout_s: float) -> Sender:
    """POST JSON with the standard library in a worker thread (no HTTP client outside providers/)."""

    def post(body: bytes) -> None:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"content-type": "application/json", "user-agent": "margin"}
        )
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # the operator's URL
            response.read()

    async def send(body: bytes) -> None:
        await asyncio.to_thread(post, body)

    return send


class WebhookQueue:
    """POSTs JSON bodies from a bounded queue on a background task, retried with backoff: alerts never
    wait on the webhook, and a full queue drops (the alert was already logged). Budget and rollout
    alerts both deliver through it."""

    def __init__(self, sender: Sender | None, *, name: str, retries: int = 3, backoff_s: float = 0.5) -> None:
        self.sender = sender
        self.name = name
        self.retries = retries
        self.backoff_s = backoff_s
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(_MAX_QUEUE)
        self._task: asyncio.Task[None] | None = None

    def offer(self, body: bytes, what: str) -> None:
        if self.sender is None:
            return
        try:
            self.queue.put_nowait(body)
        except asyncio.QueueFull:
            log.error("%s webhook queue is full: alert for %s dropped (it was logged)", self.name, what)

    async def start(self) -> None:
        if self.sender is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"margin-{self.name}-alerts")

    async def stop(self, drain_s: float = 2.0) -> None:
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                await self.queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            body = await self.queue.get()
            try:
                await self._deliver(body)
            finally:
                self.queue.task_done()

    async def _deliver(self, body: bytes) -> None:
        assert self.sender is not None
        for attempt in range(self.retries + 1):
            try:
                await self.sender(body)
                return
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                if attempt == self.retries:
                    log.error("%s alert webhook failed %d times: %s", self.name, attempt + 1, exc)
                    return
                await asyncio.sleep(self.backoff_s * 2**attempt)


class AlertSink:
    def __init__(self, sender: Sender | None = None, *, retries: int = 3, backoff_s: float = 0.5) -> None:
        self.webhook = WebhookQueue(sender, name="budget", retries=retries, backoff_s=backoff_s)
        self.sent: list[Alert] = []  # what went out (delivered or logged only), newest last; bounded

    def emit(self, alert: Alert) -> None:
        log.warning(
            "budget alert: %s %s at %s of %s (used %s, window %s, resets %s)",
            alert.scope, alert.kind, alert.threshold, alert.limit, alert.used, alert.window, alert.reset_at,
        )  # fmt: skip
        self.sent = [*self.sent[-99:], alert]
        self.webhook.offer(alert.payload(), alert.scope)

    async def start(self) -> None:
        await self.webhook.start()

    async def stop(self, drain_s: float = 2.0) -> None:
        await self.webhook.stop(drain_s)
