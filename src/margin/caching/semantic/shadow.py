"""Shadow mode: calibrate the semantic cache on a route's own traffic before it serves anything.

A route in `mode: shadow` looks up as usual but serves nothing. When a lookup finds a candidate
(cosine >= the route's `shadow_floor`), the request still goes upstream; once the fresh answer is
in, it is compared with the candidate's cached answer by an answer-agreement grader (the evals
grader protocol: normalised match for short answers, embedding similarity for long ones) and the
outcome is appended to a JSON-lines record. `margin cache calibrate --from-shadow` turns that
record into a threshold with a confidence bound (calibrate.py), and `margin cache shadow-report`
shows each route's would-be hit rate and estimated precision.

Grading happens off the request path: probes wait in a bounded queue drained by one worker; when
the queue is full a probe is dropped (and counted), never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from margin.caching.semantic.calibrate import ScoredPair
from margin.caching.semantic.engine import SemanticEngine, SemanticPolicy
from margin.caching.semantic.guard import agree, features
from margin.config.model import CacheConfig
from margin.embedding import Embedder, Matrix
from margin.evals.graders.protocol import Grade, Grader, GraderEnv, Sample
from margin.evals.graders.similarity import SimilarityGrader, SimilarityOptions
from margin.evals.graders.text import NormalisedGrader

log = logging.getLogger("margin.cache")
SHORT_ANSWER = 200  # characters: below this on both sides, answers must match after normalisation
LONG_AGREEMENT = 0.9  # cosine of the two answers' embeddings above which long answers agree


@dataclass(frozen=True, slots=True)
class ShadowProbe:
    """A would-be hit, noted at lookup time; graded once the fresh answer is known."""

    route: str
    cached_key: str
    similarity: float
    guard_ok: bool
    probability: float | None = None  # a route with the learned decision: the candidate's probability


@dataclass(frozen=True, slots=True)
class ShadowRecord:
    route: str
    at: float
    similarity: float | None  # None: the lookup found no candidate above the floor
    guard_ok: bool = False
    agreed: bool | None = None  # None: no candidate, or the grader could not decide
    probability: float | None = None  # the learned decision's probability (routes with `decision: learned`)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "route": self.route,
                "at": self.at,
                "similarity": self.similarity,
                "guard_ok": self.guard_ok,
                "agreed": self.agreed,
                "probability": self.probability,
            }
        )


class AnswerAgreement:
    """Whether two answers to the same-looking question agree (a Grader: answer vs reference)."""

    name = "answer-agreement"
    binary = True

    def __init__(self, embedder: Embedder) -> None:
        self._short: Grader = NormalisedGrader()
        env = GraderEnv(embedder_factory=lambda _name: embedder)
        self._long: Grader = SimilarityGrader(SimilarityOptions(threshold=LONG_AGREEMENT, embedder="minilm"), env)

    async def grade(self, sample: Sample) -> Grade:
        reference = str(sample.references[0]) if sample.references else ""
        short = len(sample.answer) <= SHORT_ANSWER and len(reference) <= SHORT_ANSWER
        return await (self._short if short else self._long).grade(sample)


class ShadowRecorder:
    """The bounded queue, its worker and the record file."""

    def __init__(
        self,
        path: Path,
        grader: Grader,
        *,
        max_pending: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.grader = grader
        self.dropped = 0
        self.recorded = 0
        self._clock = clock
        self._queue: asyncio.Queue[tuple[ShadowRecord, ShadowProbe | None, str, str | None]] = asyncio.Queue(
            max_pending
        )
        self._worker: asyncio.Task[None] | None = None

    @classmethod
    def for_config(cls, config: CacheConfig, data_dir: Path, embedder: Embedder) -> ShadowRecorder | None:
        """A recorder when some route is in shadow mode (its record in `cache.shadow_path`)."""
        if not any_shadow(config):
            return None
        return cls(Path(config.shadow_path.replace("{data_dir}", str(data_dir))), AnswerAgreement(embedder))

    async def probe(
        self, engine: SemanticEngine, route: str, partition: str, question: str, vector: Matrix, policy: SemanticPolicy
    ) -> ShadowProbe | None:
        """Note the best candidate above the route's shadow floor, the guard's verdict kept but not
        applied (calibration compares both decisions); None, recorded as a lookup, when there is none.
        A route with the learned decision notes instead the candidate it would serve at the lowest
        `min_probability` (engine.most_probable), with its probability: the route's own decision variable."""
        if policy.learned is not None:
            best = await engine.most_probable(partition, question, vector, policy, policy.learned)
            if best is not None:
                match = best.match
                return ShadowProbe(route, match.key, match.similarity, best.guard_ok, best.probability)
            self._offer(ShadowRecord(route, self._clock(), None), None, "", None)
            return None
        loose = SemanticPolicy(threshold=policy.shadow_floor, guard=False, max_candidates=1)
        found = await engine.find(partition, question, vector, loose)
        if found is None:
            self._offer(ShadowRecord(route, self._clock(), None), None, "", None)
            return None
        return ShadowProbe(route, found.key, found.similarity, agree(features(found.question), features(question)).ok)

    def fresh_answer(self, probe: ShadowProbe, fresh: str, cached: str | None) -> None:
        """The upstream answered a request whose lookup had a candidate: grade them, later."""
        record = ShadowRecord(probe.route, self._clock(), probe.similarity, probe.guard_ok, None, probe.probability)
        self._offer(record, probe, fresh, cached)

    def _offer(self, record: ShadowRecord, probe: ShadowProbe | None, fresh: str, cached: str | None) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._drain())
        try:
            self._queue.put_nowait((record, probe, fresh, cached))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _drain(self) -> None:
        while True:
            record, probe, fresh, cached = await self._queue.get()
            try:
                if probe is not None and cached is not None:
                    grade = await self.grader.grade(Sample(messages=(), answer=fresh, references=(cached,)))
                    record = ShadowRecord(
                        record.route,
                        record.at,
                        record.similarity,
                        record.guard_ok,
                        grade.passed if grade.score is not None else None,
                        record.probability,
                    )
                await asyncio.to_thread(self._append, record)
                self.recorded += 1
            except OSError as error:
                log.warning("shadow record not written: %s", error)
            finally:
                self._queue.task_done()

    def _append(self, record: ShadowRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as out:
            out.write(record.to_json() + b"\n")

    async def flush(self) -> None:
        if self._worker is not None:
            await self._queue.join()

    async def close(self) -> None:
        await self.flush()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None


def read_records(path: Path) -> Iterator[ShadowRecord]:
    return read_lines(path.read_text(encoding="utf-8").splitlines())


def read_lines(lines: Iterable[str]) -> Iterator[ShadowRecord]:
    for line in lines:
        if line.strip():
            raw = orjson.loads(line)
            probability = raw.get("probability")  # absent in records written before the learned decision
            yield ShadowRecord(raw["route"], raw["at"], raw["similarity"], raw["guard_ok"], raw["agreed"], probability)


@dataclass(frozen=True, slots=True)
class RouteShadow:
    route: str
    lookups: int
    graded: list[ScoredPair]  # would-be hits with a decided grade, as calibration pairs (cosine)
    learned: list[ScoredPair] = field(default_factory=list)  # those with a probability: (probability, guard passed)


def by_route(records: Iterable[ShadowRecord]) -> dict[str, RouteShadow]:
    lookups: dict[str, int] = {}
    graded: dict[str, list[ScoredPair]] = {}
    learned: dict[str, list[ScoredPair]] = {}
    for record in records:
        lookups[record.route] = lookups.get(record.route, 0) + 1
        if record.similarity is not None and record.agreed is not None:
            graded.setdefault(record.route, []).append(ScoredPair(record.similarity, record.guard_ok, record.agreed))
            if record.probability is not None:  # only guard-passing candidates get one
                learned.setdefault(record.route, []).append(ScoredPair(record.probability, True, record.agreed))
    return {
        route: RouteShadow(route, count, graded.get(route, []), learned.get(route, []))
        for route, count in lookups.items()
    }


def any_shadow(config: CacheConfig) -> bool:
    routes = [r.semantic for r in config.routes.values() if r.semantic is not None]
    return any(s.enabled and s.mode == "shadow" for s in (config.semantic, *routes))


def answer_text(body: Mapping[str, Any]) -> str:
    """The text of a cached or fresh answer: every choice's message (or legacy text), joined."""
    parts = []
    for choice in body.get("choices") or ():
        message = choice.get("message") or {}
        content = message.get("content") if isinstance(message, dict) else None
        parts.append(content if isinstance(content, str) else str(choice.get("text") or ""))
    return "\n".join(parts)
