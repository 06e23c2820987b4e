"""The semantic cache engine: embeds a question (micro-batched), finds the nearest cached questions
in its partition, and accepts one only if it clears the route's threshold and the guard (and, in
the uncertain band, the verifier). Partitions load lazily from the backend, so the index survives
restarts without a separate file.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from margin.caching.backend import CacheBackend
from margin.caching.semantic.batcher import MicroBatcher
from margin.caching.semantic.calibrate import normalise
from margin.caching.semantic.guard import Features, agree, features
from margin.caching.semantic.index import PartitionIndex
from margin.caching.semantic.learned import LearnedDecision, PairContext, pair_features
from margin.caching.semantic.verifier import Verifier
from margin.embedding import Matrix


@dataclass(frozen=True, slots=True)
class SemanticPolicy:
    threshold: float
    verify_above: float | None = None
    guard: bool = True
    max_candidates: int = 4
    mode: str = "serve"  # or "shadow": look up and record, serve nothing
    shadow_floor: float = 0.8
    learned: LearnedDecision | None = None  # set: its probability, not `threshold`, accepts a hit
    min_probability: float = 0.967  # the config default (SemanticCacheConfig)


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    key: str
    similarity: float
    verified: bool  # accepted by the verifier (in the uncertain band) rather than the threshold
    question: str  # the cached question it matched


@dataclass(slots=True)
class _Partition:
    index: PartitionIndex
    texts: dict[str, str]
    feature_cache: dict[str, Features]
    cursor: str  # the backend's change position this partition has seen
    synced_at: float
    # Fingerprints of the cached answers this process stored (see `answer_fingerprint`); entries
    # loaded from the backend or added by other writers have none: their answers count as different.
    answers: dict[str, bytes] = field(default_factory=dict)

    def features_of(self, key: str) -> Features:
        """Guard features of a cached question, computed on first use (a restart loads thousands
        of questions; only the few that ever become candidates need them)."""
        found = self.feature_cache.get(key)
        if found is None:
            found = self.feature_cache[key] = features(self.texts[key])
        return found


class SemanticEngine:
    def __init__(
        self,
        backend: CacheBackend,
        batcher: MicroBatcher,
        *,
        ann_above: int = 20_000,
        verifier: Verifier | None = None,
        sync_interval_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.batcher = batcher
        self.ann_above = ann_above
        self.verifier = verifier
        self.sync_interval_s = sync_interval_s
        self._monotonic = monotonic
        self._partitions: dict[str, _Partition] = {}
        self._loading: dict[str, asyncio.Task[_Partition]] = {}
        self.rejected_by_guard = 0

    @property
    def dim(self) -> int:
        return self.batcher.embedder.dim

    async def embed(self, text: str) -> Matrix:
        return await self.batcher.embed(text)

    async def find(self, partition: str, text: str, vector: Matrix, policy: SemanticPolicy) -> SemanticMatch | None:
        loaded = await self._partition(partition)
        if self._monotonic() - loaded.synced_at >= self.sync_interval_s:
            loaded = await self._catch_up(partition, loaded)
        if policy.learned is not None:
            return self._find_learned(loaded, text, vector, policy, policy.learned)
        floor = policy.threshold if self.verifier is None or policy.verify_above is None else policy.verify_above
        query: Features | None = None  # computed only once a candidate clears the floor
        for key, similarity in loaded.index.search(vector, policy.max_candidates):
            if similarity < floor:
                break  # candidates come best first
            cached_text = loaded.texts[key]
            if policy.guard:
                query = query or features(text)
            if query is not None and not agree(loaded.features_of(key), query).ok:
                self.rejected_by_guard += 1
                continue
            if similarity >= policy.threshold:
                return SemanticMatch(key, similarity, verified=False, question=cached_text)
            if self.verifier is not None and await self.verifier.same_answer(cached_text, text):
                return SemanticMatch(key, similarity, verified=True, question=cached_text)
        return None

    def _find_learned(
        self, loaded: _Partition, text: str, vector: Matrix, policy: SemanticPolicy, model: LearnedDecision
    ) -> SemanticMatch | None:
        """The learned decision: candidates best first down to the model's cosine floor; the guard
        (when on) rejects first, then the model's probability must reach `min_probability`."""
        for candidate in _learned_candidates(loaded, text, vector, policy, model):
            if candidate.probability is None:
                self.rejected_by_guard += 1
            elif candidate.probability >= policy.min_probability:
                return candidate.match
        return None

    async def most_probable(
        self, partition: str, text: str, vector: Matrix, policy: SemanticPolicy, model: LearnedDecision
    ) -> LearnedCandidate | None:
        """Shadow mode's probe of a learned route: of the candidates the learned decision would score
        (above the model's floor, guard-passing when the guard is on), the one with the highest
        probability; the route would serve a hit exactly when that probability reaches `min_probability`."""
        loaded = await self._partition(partition)
        scored = [c for c in _learned_candidates(loaded, text, vector, policy, model) if c.probability is not None]
        return max(scored, key=lambda c: c.probability or 0.0, default=None)

    async def add(self, partition: str, key: str, text: str, vector: Matrix, answer: str | None = None) -> None:
        """Index a stored entry; `answer` (its cached answer's text), when given, lets the learned
        decision tell a rival with another answer from a paraphrase holding the same one."""
        loaded = await self._partition(partition)
        _insert(loaded, key, text, vector)
        loaded.feature_cache[key] = features(text)  # on the write path, off the next lookup's
        fingerprint = answer_fingerprint(answer) if answer is not None else None
        if fingerprint is not None:
            loaded.answers[key] = fingerprint

    async def _catch_up(self, partition: str, loaded: _Partition) -> _Partition:
        """Add what other writers stored since the last look; reload if the backend lost track."""
        loaded.synced_at = self._monotonic()  # one catch-up per interval, even if this one fails
        while True:
            changes = await self.backend.vector_changes(partition, loaded.cursor)
            if changes.reset:
                self._partitions.pop(partition, None)
                return await self._partition(partition)
            for record in changes.records:
                _insert(loaded, record.key, record.text, record.vector)
            loaded.cursor = changes.cursor
            if not changes.more:
                return loaded

    def forget(self, keys: list[str]) -> None:
        """Drop keys whose answers are gone (evicted, expired, invalidated) from loaded partitions."""
        doomed = set(keys)
        for loaded in self._partitions.values():
            for key in doomed.intersection(loaded.texts):
                loaded.index.remove(key)
                del loaded.texts[key]
                loaded.feature_cache.pop(key, None)
                loaded.answers.pop(key, None)

    def unload(self) -> None:
        """Forget every loaded partition (they reload from the backend on next use)."""
        self._partitions.clear()

    async def _partition(self, partition: str) -> _Partition:
        loaded = self._partitions.get(partition)
        if loaded is not None:
            return loaded
        task = self._loading.get(partition)
        if task is None:  # one load per partition, however many lookups race for it
            task = asyncio.get_running_loop().create_task(self._load(partition))
            self._loading[partition] = task
        try:
            loaded = await asyncio.shield(task)
        finally:
            if task.done():
                self._loading.pop(partition, None)
        self._partitions.setdefault(partition, loaded)
        return self._partitions[partition]

    async def _load(self, partition: str) -> _Partition:
        # The position first: whatever is added while the vectors load is seen twice, never missed
        # (adding a key twice is harmless).
        cursor = (await self.backend.vector_changes(partition, None)).cursor
        records = await self.backend.vectors(partition)
        loaded = _Partition(PartitionIndex(self.dim, ann_above=self.ann_above), {}, {}, cursor, self._monotonic())
        for record in records:
            _insert(loaded, record.key, record.text, record.vector)
        return loaded

    def partition_index(self, partition: str) -> PartitionIndex | None:
        loaded = self._partitions.get(partition)
        return loaded.index if loaded is not None else None

    async def close(self) -> None:
        await self.batcher.close()


@dataclass(frozen=True, slots=True)
class LearnedCandidate:
    match: SemanticMatch
    guard_ok: bool
    probability: float | None  # None: the guard rejected it (never scored)


def _learned_candidates(
    loaded: _Partition, text: str, vector: Matrix, policy: SemanticPolicy, model: LearnedDecision
) -> Iterator[LearnedCandidate]:
    """The candidates the learned decision looks at, best cosine first down to the model's floor, each
    with its probability (scored lazily: a lookup that stops at the first accepted pays for no more)."""
    query: Features | None = None
    found = loaded.index.search(vector, max(2, policy.max_candidates))  # the runner-up is a feature
    similarities = [similarity for _, similarity in found]
    answers = [loaded.answers.get(key) for key, _ in found]
    for rank, (key, similarity) in enumerate(found[: policy.max_candidates]):
        if similarity < model.floor:
            return
        query = query or features(text)
        cached = loaded.features_of(key)
        match = SemanticMatch(key, similarity, verified=False, question=loaded.texts[key])
        ok = agree(cached, query).ok if policy.guard else True
        if not ok:
            yield LearnedCandidate(match, False, None)
            continue
        row = pair_features(query, cached, similarity, PairContext.among(similarities, rank, answers))
        yield LearnedCandidate(match, True, model.probability(row))


def answer_fingerprint(answer: str) -> bytes | None:
    """Two cached answers are "the same" when their texts match after normalisation (case, width,
    spacing, edge punctuation): a digest, so a partition keeps 16 bytes per answer, not the text.
    None for an answer without text (tool calls only): it is like no other."""
    folded = normalise(answer)
    return hashlib.blake2b(folded.encode(), digest_size=16).digest() if folded else None


def _insert(loaded: _Partition, key: str, text: str, vector: Matrix) -> None:
    loaded.index.add(key, vector)
    loaded.texts[key] = text
