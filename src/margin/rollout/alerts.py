"""Every rollout transition is logged at once and, with `rollouts.alert_webhook`, POSTed as JSON by
a background task (retried with backoff). Only the replica whose compare-and-set won the transition
alerts, so each transition is announced once however many replicas run."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.error
from typing import Any

import orjson

from margin.budgets.alerts import Sender, iso
from margin.storage.rollouts import RolloutRecord, TransitionRecord

log = logging.getLogger("margin.rollout")
_MAX_QUEUE = 1000


def alert_payload(record: RolloutRecord, entry: TransitionRecord) -> dict[str, Any]:
    return {
        "type": "margin.rollout_transition",
        "rollout_id": record.rollout_id,
        "model_group": record.model_group,
        "stable": record.stable,
        "candidate": record.candidate,
        "from_state": entry.from_state,
        "to_state": entry.to_state,
        "from_step": entry.from_step,
        "to_step": entry.to_step,
        "actor": entry.actor,
        "reason": entry.reason,
        "at": iso(entry.at),
        "snapshot": entry.snapshot,
    }


class RolloutAlerts:
    def __init__(self, sender: Sender | None = None, *, retries: int = 3, backoff_s: float = 0.5) -> None:
        self.sender = sender
        self.retries = retries
        self.backoff_s = backoff_s
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(_MAX_QUEUE)
        self.sent: list[dict[str, Any]] = []  # newest last, bounded: what went out (tests, status)
        self._task: asyncio.Task[None] | None = None

    def emit(self, record: RolloutRecord, entry: TransitionRecord) -> None:
        level = logging.WARNING if entry.to_state in ("rolled_back", "aborted") else logging.INFO
        log.log(
            level, "rollout %s (%s: %s -> %s): %s -> %s step %d by %s: %s", record.rollout_id, record.model_group,
            record.stable, record.candidate, entry.from_state or "-", entry.to_state, entry.to_step, entry.actor,
            entry.reason,
        )  # fmt: skip
        payload = alert_payload(record, entry)
        self.sent = [*self.sent[-99:], payload]
        if self.sender is None:
            return
        try:
            self.queue.put_nowait(orjson.dumps(payload))
        except asyncio.QueueFull:
            log.error("rollout alert webhook queue is full: alert for %s dropped (it was logged)", record.rollout_id)

    def emit_payload(self, payload: dict[str, Any], message: str) -> None:
        """Any other rollout-side alert (a quality drift): logged as a warning, then POSTed."""
        log.warning("%s", message)
        self.sent = [*self.sent[-99:], payload]
        if self.sender is None:
            return
        try:
            self.queue.put_nowait(orjson.dumps(payload))
        except asyncio.QueueFull:
            log.error("rollout alert webhook queue is full: alert dropped (it was logged)")

    async def start(self) -> None:
        if self.sender is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="margin-rollout-alerts")

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
                    log.error("rollout alert webhook failed %d times: %s", attempt + 1, exc)
                    return
                await asyncio.sleep(self.backoff_s * 2**attempt)
