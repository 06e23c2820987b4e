"""The rolling production sample of each model group that asks for one (`sample:`): a share of its
live non-streamed requests, chosen by a hash of the request id, redacted (margin.evals.redact) and
written by a worker beside the request path; the store is pruned to the group's size and age."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from margin.config.rollout import ProductionSample
from margin.evals.redact import redact
from margin.rollout.split import SCALE, bucket
from margin.storage.rollouts import RolloutStore, SampleRecord

_PRUNE_EVERY = 100  # samples written per group between prunes
_SALT = "margin-sample"


@dataclass(frozen=True, slots=True)
class SampleJob:
    model_group: str
    request_id: str
    deployment: str
    messages: Sequence[Mapping[str, Any]]
    answer: str


def redacted_messages(messages: Sequence[Mapping[str, Any]], found: dict[str, int]) -> list[dict[str, Any]]:
    """The messages with every text part redacted (other parts, e.g. images, are dropped)."""
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            content = "\n".join(str(p) for p in parts)
        clean = redact(str(content or ""))
        for label, n in clean.found.items():
            found[label] = found.get(label, 0) + n
        out.append({"role": str(message.get("role", "user")), "content": clean.text})
    return out


class ProductionSampler:
    def __init__(
        self, store: RolloutStore, groups: Mapping[str, ProductionSample], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.groups = groups
        self.clock = clock
        self._written: dict[str, int] = {}

    def wants(self, model_group: str, request_id: str) -> bool:
        settings = self.groups.get(model_group)
        return settings is not None and bucket(_SALT, request_id) < settings.share * SCALE

    async def keep(self, job: SampleJob) -> None:
        found: dict[str, int] = {}
        messages = redacted_messages(job.messages, found)
        answer = redact(job.answer)
        for label, n in answer.found.items():
            found[label] = found.get(label, 0) + n
        now = self.clock()
        await self.store.add_sample(
            SampleRecord(
                f"smp_{uuid.uuid4().hex[:16]}",
                job.model_group,
                now,
                job.request_id,
                job.deployment,
                messages,
                answer.text,
                found,
            )
        )
        count = self._written[job.model_group] = self._written.get(job.model_group, 0) + 1
        if count % _PRUNE_EVERY == 1:
            settings = self.groups[job.model_group]
            before = now - settings.retention_days * 86400
            await self.store.prune_samples(job.model_group, keep=settings.max_items, before=before)
