"""The semantic machinery: micro-batching, indexes (exact, hnswlib, the upgrade), persistence, verifier."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from test_cache_support import HAS_MINILM, Upstream, backend_for, context, minilm, request, serve, stage_for

from margin.caching.semantic.batcher import EmbeddingFailed, MicroBatcher
from margin.caching.semantic.engine import SemanticEngine, SemanticPolicy
from margin.caching.semantic.index import ExactIndex, HnswIndex, PartitionIndex, hnswlib_available
from margin.caching.semantic.verifier import PromptedVerifier
from margin.embedding import HashingEmbedder, Matrix
from margin.types import JSON


class RecordingEmbedder:
    """Hashing vectors, recording each call's batch (and optionally failing)."""

    name = "recording"
    dim = 64

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self._inner = HashingEmbedder(dim=64)
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Matrix:
        with self._lock:
            self.calls.append(list(texts))
        if self.fail:
            raise RuntimeError("model crashed")
        return self._inner.embed(texts)


async def test_concurrent_lookups_share_embedding_calls() -> None:
    embedder = RecordingEmbedder()
    batcher = MicroBatcher(embedder, window_s=0.01, max_batch=8)
    texts = [f"question number {i}" for i in range(20)]
    texts.insert(4, "question number 3")  # a duplicate within the first batch
    vectors = await asyncio.gather(*(batcher.embed(t) for t in texts))
    assert len(embedder.calls) <= 4 and max(len(c) for c in embedder.calls) <= 8
    assert sum(len(c) for c in embedder.calls) == 20  # the duplicate was embedded once
    np.testing.assert_allclose(vectors[3], vectors[4])
    np.testing.assert_allclose(vectors[6], HashingEmbedder(dim=64).embed(["question number 5"])[0])
    await batcher.close()


async def test_a_burst_is_shared_among_idle_workers() -> None:
    embedder = RecordingEmbedder()
    batcher = MicroBatcher(embedder, window_s=0.01, max_batch=32, workers=2)
    texts = [f"question number {i}" for i in range(32)]
    vectors = await asyncio.gather(*(batcher.embed(t) for t in texts))
    assert sorted(len(c) for c in embedder.calls) == [16, 16]  # both workers (cores) busy, not one
    assert sorted(t for c in embedder.calls for t in c) == sorted(texts)
    np.testing.assert_allclose(vectors[20], HashingEmbedder(dim=64).embed(["question number 20"])[0])
    # More than the workers can take at once: full batches, the rest waits for a free worker.
    embedder.calls.clear()
    await asyncio.gather(*(batcher.embed(f"other question {i}") for i in range(80)))
    assert max(len(c) for c in embedder.calls) == 32 and sum(len(c) for c in embedder.calls) == 80
    await batcher.close()


async def test_a_lone_lookup_waits_only_the_window() -> None:
    batcher = MicroBatcher(RecordingEmbedder(), window_s=0.005, max_batch=32)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await batcher.embed("hello")
    assert loop.time() - start < 0.5
    await batcher.close()


async def test_embedder_failures_reach_every_waiting_lookup() -> None:
    batcher = MicroBatcher(RecordingEmbedder(fail=True), window_s=0.001)
    results = await asyncio.gather(batcher.embed("a"), batcher.embed("b"), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    await batcher.close()


async def test_a_cancelled_lookup_does_not_break_the_batch() -> None:
    batcher = MicroBatcher(RecordingEmbedder(), window_s=0.02)
    doomed = asyncio.ensure_future(batcher.embed("cancel me"))
    kept = asyncio.ensure_future(batcher.embed("keep me"))
    await asyncio.sleep(0)
    doomed.cancel()
    assert (await kept).shape == (64,)
    await batcher.close()
    assert issubclass(EmbeddingFailed, RuntimeError)


def unit(rows: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_exact_index_search_remove_and_slot_reuse() -> None:
    vectors = unit(300)
    index = ExactIndex(32)
    for i, v in enumerate(vectors):
        index.add(f"k{i}", v)
    assert index.search(vectors[7], 1)[0][0] == "k7"
    assert index.search(vectors[7], 1)[0][1] == pytest.approx(1.0, abs=1e-5)
    index.remove("k7")
    assert "k7" not in [k for k, _ in index.search(vectors[7], 5)]
    index.add("new", vectors[7])
    assert index.search(vectors[7], 1)[0][0] == "new" and len(index) == 300
    top = index.search(vectors[0], 10)
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)


@pytest.mark.skipif(not hnswlib_available(), reason="hnswlib not installed")
def test_hnsw_index_matches_exact_search() -> None:
    vectors = unit(2000, seed=1)
    exact, graph = ExactIndex(32), HnswIndex(32, capacity=100)  # capacity grows as needed
    graph.add_many([(f"k{i}", v) for i, v in enumerate(vectors)])
    for i, v in enumerate(vectors):
        exact.add(f"k{i}", v)
    queries = unit(50, seed=2)
    agree = sum(graph.search(q, 1)[0][0] == exact.search(q, 1)[0][0] for q in queries)
    assert agree >= 48
    graph.remove("k5")
    assert "k5" not in [k for k, _ in graph.search(vectors[5], 3)]
    graph.add("k5", vectors[5])
    assert graph.search(vectors[5], 1)[0][0] == "k5"


@pytest.mark.skipif(not hnswlib_available(), reason="hnswlib not installed")
async def test_a_partition_upgrades_to_hnsw_without_losing_changes() -> None:
    vectors = unit(700, seed=3)
    index = PartitionIndex(32, ann_above=100)
    for i in range(150):
        index.add(f"k{i}", vectors[i])
    assert index.kind == "exact"  # the graph builds in the background
    for i in range(150, 700):  # changes while the graph builds are replayed onto it
        index.add(f"k{i}", vectors[i])
    index.remove("k3")
    index.remove("k600")
    await index.ready()
    assert index.kind == "hnsw" and len(index) == 698
    assert index.search(vectors[180], 1)[0][0] == "k180"
    assert index.search(vectors[650], 1)[0][0] == "k650"
    assert "k600" not in [k for k, _ in index.search(vectors[600], 3)]
    assert "k3" not in [k for k, _ in index.search(vectors[3], 3)]


@pytest.mark.skipif(not HAS_MINILM, reason="needs the embed extra")
async def test_semantic_entries_survive_a_restart(tmp_path: Path) -> None:
    upstream = Upstream()
    first = stage_for(backend_for("sqlite", tmp_path), embedder=minilm())
    await serve(first, context(), request("How do I reset my router password?"), upstream)
    await first.close()
    second = stage_for(backend_for("sqlite", tmp_path), embedder=minilm())
    served = await serve(second, context(), request("How can I reset my router password?"), upstream)
    assert served.kind == "semantic" and served.text == "How do I reset my router password?"
    assert float(served.headers["x-margin-cache-similarity"]) >= 0.9
    await second.close()


class Oracle:
    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.asked: list[tuple[str, str]] = []

    async def same_answer(self, cached_question: str, new_question: str) -> bool:
        self.asked.append((cached_question, new_question))
        return self.answer


@pytest.mark.parametrize("verdict", [True, False])
async def test_the_verifier_decides_the_uncertain_band(verdict: bool, tmp_path: Path) -> None:
    backend = backend_for("memory", tmp_path)
    embedder = RecordingEmbedder()
    oracle = Oracle(verdict)
    engine = SemanticEngine(backend, MicroBatcher(embedder, window_s=0), verifier=oracle)
    a, b = "how do i reset my router", "how do i reset the router"
    va, vb = embedder.embed([a, b])
    similarity = float(va @ vb)
    await engine.add("p", "key-a", a, va)
    band = SemanticPolicy(threshold=min(1.0, similarity + 0.01), verify_above=similarity - 0.01)
    match = await engine.find("p", b, vb, band)
    assert oracle.asked == [(a, b)]
    assert (match is not None) is verdict and (match is None or match.verified)
    no_band = SemanticPolicy(threshold=min(1.0, similarity + 0.01))
    assert await engine.find("p", b, vb, no_band) is None and len(oracle.asked) == 1
    await engine.close()


async def test_the_guard_is_applied_before_the_verifier(tmp_path: Path) -> None:
    embedder = RecordingEmbedder()
    oracle = Oracle(True)
    engine = SemanticEngine(backend_for("memory", tmp_path), MicroBatcher(embedder, window_s=0), verifier=oracle)
    a, b = "how do i enable dark mode", "how do i disable dark mode"
    va, vb = embedder.embed([a, b])
    await engine.add("p", "key-a", a, va)
    assert await engine.find("p", b, vb, SemanticPolicy(threshold=0.999, verify_above=0.1)) is None
    assert oracle.asked == [] and engine.rejected_by_guard == 1
    await engine.close()


async def test_prompted_verifier_reads_a_clear_yes_only() -> None:
    replies = iter(["YES", "yes.", "No", "Yes, but only if..."])
    prompts: list[list[JSON]] = []

    async def ask(messages: list[JSON]) -> str:
        prompts.append(messages)
        return next(replies)

    verifier = PromptedVerifier(ask)
    assert [await verifier.same_answer("a?", "b?") for _ in range(4)] == [True, True, False, False]
    assert "Question 1: a?" in str(prompts[0][0]["content"])
