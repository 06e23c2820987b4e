"""Client feedback on an answer (`POST /v1/feedback {request_id, score, comment}`): kept with the
request id, and, for a request a live rollout answered, added to its arm's quality signal.

A request's ledger rows reach the database within a fraction of a second of its answer, so a
request id not found yet is looked up again for up to `wait_s` before it is called unknown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from margin.errors import NotFound
from margin.rollout.signals import SignalBuffer
from margin.storage.rollouts import Feedback, RequestTag, RolloutStore

_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4, 0.8)


class FeedbackDesk:
    def __init__(
        self, store: RolloutStore, signals: SignalBuffer, *, clock: Callable[[], float] = time.time, wait_s: float = 1.5
    ) -> None:
        self.store = store
        self.signals = signals
        self.clock = clock
        self.wait_s = wait_s

    async def _find(self, request_id: str) -> RequestTag | None:
        waited = 0.0
        found = await self.store.find_request(request_id)
        for delay in _RETRY_DELAYS:
            if found is not None or waited + delay > self.wait_s:
                break
            await asyncio.sleep(delay)
            waited += delay
            found = await self.store.find_request(request_id)
        return found

    async def give(self, request_id: str, score: float, comment: str) -> Feedback:
        tag = await self._find(request_id)
        if tag is None:
            raise NotFound(f"No request with id {request_id[:64]!r} is known to this gateway.", param="request_id")
        arm = tag.arm if tag.arm in ("stable", "candidate") else None
        feedback = Feedback(request_id, score, comment, self.clock(), tag.rollout_id, arm)
        await self.store.add_feedback(feedback)
        if tag.rollout_id is not None and arm is not None and tag.step is not None:
            self.signals.quality((tag.rollout_id, tag.step, "candidate" if arm == "candidate" else "stable"), score)
        return feedback
