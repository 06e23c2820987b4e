"""Every rollout transition is logged at once and, with `rollouts.alert_webhook`, POSTed as JSON by
a background task (retried with backoff). Only the replica whose compare-and-set won the transition
alerts, so each transition is announced once however many replicas run."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from margin.budgets.alerts import Sender, WebhookQueue, iso
from margin.storage.rollouts import RolloutRecord, TransitionRecord

log = logging.getLogger("margin.rollout")


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
        self.webhook = WebhookQueue(sender, name="rollout", retries=retries, backoff_s=backoff_s)
        self.sent: list[dict[str, Any]] = []  # newest last, bounded: what went out (tests, status)

    def emit(self, record: RolloutRecord, entry: TransitionRecord) -> None:
        level = logging.WARNING if entry.to_state in ("rolled_back", "aborted") else logging.INFO
        log.log(
            level, "rollout %s (%s: %s -> %s): %s -> %s step %d by %s: %s", record.rollout_id, record.model_group,
            record.stable, record.candidate, entry.from_state or "-", entry.to_state, entry.to_step, entry.actor,
            entry.reason,
        )  # fmt: skip
        payload = alert_payload(record, entry)
        self.sent = [*self.sent[-99:], payload]
        self.webhook.offer(orjson.dumps(payload), record.rollout_id)

    def emit_payload(self, payload: dict[str, Any], message: str) -> None:
        """Any other rollout-side alert (a quality drift): logged as a warning, then POSTed."""
        log.warning("%s", message)
        self.sent = [*self.sent[-99:], payload]
        self.webhook.offer(orjson.dumps(payload), str(payload.get("type", "rollout")))

    async def start(self) -> None:
        await self.webhook.start()

    async def stop(self, drain_s: float = 2.0) -> None:
        await self.webhook.stop(drain_s)
