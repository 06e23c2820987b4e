"""The rolling production sample of each model group that asks for one (`sample:`): a share of its
live requests, chosen by a hash of the request id, redacted (margin.evals.redact) and written by a
worker beside the request path; the store is pruned to the group's size and age. A streamed answer
is kept as its stream meter joined it once the stream ended whole (margin.pipeline.rollout_stage);
one that did not end whole, or is over `rollouts.answer_max_chars`, is not kept (counted).

With `sample.redact.names_and_addresses: presidio` (the `pii` extra) the whole redaction of a sample
runs in a worker process of the sampler's own (spawned on the first such sample): the patterns, then
Presidio (margin.evals.pii), whose analyzer is built there once. A process, not a thread: spaCy holds
the GIL for most of its ~15 ms a sample, which a thread would take from the event loop (see
bench/pii_redaction.py). It is bounded: a sample with more text than `max_chars` is not analysed, and
one whose analysis outlasts `timeout_s` is not waited for; neither is kept (counted in `skipped`)."""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from margin.config.pii import SampleRedaction
from margin.config.rollout import ProductionSample
from margin.evals.pii import PresidioRedactor
from margin.evals.redact import redact
from margin.rollout.split import SCALE, bucket
from margin.storage.rollouts import RolloutStore, SampleRecord

_PRUNE_EVERY = 100  # samples written per group between prunes
_SALT = "margin-sample"
log = logging.getLogger("margin.rollout")
TextFilter = Callable[[str, dict[str, int]], str]  # more redaction after the patterns: (text, found) -> text


@dataclass(frozen=True, slots=True)
class SampleJob:
    model_group: str
    request_id: str
    deployment: str
    messages: Sequence[Mapping[str, Any]]
    answer: str


def _text(content: Any) -> str:
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(str(p) for p in parts)
    return str(content or "")


def _clean(text: str, found: dict[str, int], more: TextFilter | None) -> str:
    clean = redact(text)
    for label, n in clean.found.items():
        found[label] = found.get(label, 0) + n
    return clean.text if more is None else more(clean.text, found)


def redacted_messages(
    messages: Sequence[Mapping[str, Any]], found: dict[str, int], more: TextFilter | None = None
) -> list[dict[str, Any]]:
    """The messages with every text part redacted (other parts, e.g. images, are dropped)."""
    return [
        {"role": str(m.get("role", "user")), "content": _clean(_text(m.get("content")), found, more)} for m in messages
    ]


def text_size(job: SampleJob) -> int:
    return sum(len(_text(m.get("content"))) for m in job.messages) + len(job.answer)


def redact_job(job: SampleJob, more: TextFilter | None = None) -> tuple[list[dict[str, Any]], str, dict[str, int]]:
    """The job's messages and answer redacted, and the count of each kind found."""
    found: dict[str, int] = {}
    messages = redacted_messages(job.messages, found, more)
    return messages, _clean(job.answer, found, more), found


class ProductionSampler:
    def __init__(
        self, store: RolloutStore, groups: Mapping[str, ProductionSample], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.groups = groups
        self.clock = clock
        self._written: dict[str, int] = {}
        self._worker: ProcessPoolExecutor | None = None  # spawned by the first sample that needs Presidio
        self._loaded: set[str] = set()  # spaCy models the worker has built an analyzer for
        # samples not kept, by why: too_long, timeout, worker_died (redaction); client_left, error,
        # not_whole, too_long (a stream that did not end whole, or over rollouts.answer_max_chars);
        # queue_full (the sampling queue beside the request path was full)
        self.skipped: dict[str, int] = {}
        self.on_skip: Callable[[str, str], None] | None = None  # (model group, why): the metric

    def wants(self, model_group: str, request_id: str) -> bool:
        settings = self.groups.get(model_group)
        return settings is not None and bucket(_SALT, request_id) < settings.share * SCALE

    async def keep(self, job: SampleJob) -> None:
        settings = self.groups[job.model_group]
        if settings.redact.names_and_addresses == "off":
            messages, answer, found = redact_job(job)
        else:
            cleaned = await self._off_loop(job, settings.redact)
            if cleaned is None:
                return
            messages, answer, found = cleaned
        now = self.clock()
        await self.store.add_sample(
            SampleRecord(
                f"smp_{uuid.uuid4().hex[:16]}", job.model_group, now, job.request_id, job.deployment, messages, answer,
                found,
            )
        )  # fmt: skip
        count = self._written[job.model_group] = self._written.get(job.model_group, 0) + 1
        if count % _PRUNE_EVERY == 1:
            before = now - settings.retention_days * 86400
            await self.store.prune_samples(job.model_group, keep=settings.max_items, before=before)

    async def _off_loop(
        self, job: SampleJob, settings: SampleRedaction
    ) -> tuple[list[dict[str, Any]], str, dict[str, int]] | None:
        """The job redacted in the worker process, Presidio included; None (counted) when it is too
        long or took too long. The analyzer's first load is waited for without the time limit."""
        if text_size(job) > settings.max_chars:
            self._skip(job, "too_long")
            return None
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._worker = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        if settings.spacy_model not in self._loaded:
            try:
                await loop.run_in_executor(self._worker, load_presidio, settings.spacy_model)
            except BrokenProcessPool:
                self.close()
                raise
            self._loaded.add(settings.spacy_model)
        pending = loop.run_in_executor(self._worker, redact_with_presidio, job, settings)
        try:
            async with asyncio.timeout(settings.timeout_s):
                return await pending
        except TimeoutError:
            self._skip(job, "timeout")
        except BrokenProcessPool:  # the worker died (killed, out of memory): the next sample spawns another
            self.close()
            self._skip(job, "worker_died")
        return None

    def _skip(self, job: SampleJob, why: str) -> None:
        self.not_kept(job.model_group, why)
        log.info("production sample of %s (request %s) not kept: %s", job.model_group, job.request_id, why)

    def not_kept(self, model_group: str, why: str) -> None:
        """Count a request chosen for the sample that is not kept."""
        self.skipped[why] = self.skipped.get(why, 0) + 1
        if self.on_skip is not None:
            self.on_skip(model_group, why)

    def close(self) -> None:
        """Stop the redaction process (an analysis under way finishes; none waits to start)."""
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
            self._worker = None
            self._loaded.clear()


# --- in the worker process ------------------------------------------------------------------------


@functools.cache
def _presidio(spacy_model: str) -> PresidioRedactor:
    return PresidioRedactor(spacy_model)  # one per process and model


def load_presidio(spacy_model: str) -> None:
    _presidio(spacy_model).load()


def redact_with_presidio(job: SampleJob, settings: SampleRedaction) -> tuple[list[dict[str, Any]], str, dict[str, int]]:
    names = _presidio(settings.spacy_model)

    def more(text: str, found: dict[str, int]) -> str:
        return names.redact(text, settings.entities, settings.score_threshold, found)

    return redact_job(job, more)
