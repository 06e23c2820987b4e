"""What budgets and rate limits add to a request: p50 per request through the real pipeline
(auth -> route -> limits -> call on the in-process fake -> meter -> record) for three setups, in one
run and on the same machine:

    baseline  a key with no limits at all (stage ② skips the store)
    sqlite    the key has a money budget, a token budget, requests/min and tokens/min
              (counters in SQLite: one BEGIN IMMEDIATE transaction per reserve)
    redis     the same limits, counters in a local redis-server on loopback (one Lua call)

The setups run side by side in interleaved blocks, so drift on a shared machine hits all alike. Two
figures per setup: the response path (reserve before the call; the settle runs in the background, as
in production) and the full cost (the settle awaited too).

    python bench/limits.py [--requests 3000]

Targets (issue 5): +<= 0.3 ms p50 with SQLite, +<= 1 ms p50 with Redis, over the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import redis_server

from margin.app import create_app
from margin.config import parse_config
from margin.identity import KeySpec
from margin.pipeline.context import RequestContext
from margin.pipeline.handler import Pipeline
from margin.storage.memory import MemoryKeyStore
from margin.types import ChatRequest

TARGETS_MS = {"sqlite": 0.3, "redis": 1.0}
CONFIG = """
deployments:
  - {name: up, provider: fake, model: fake, price: {input: "1", output: "2"}}
models:
  - {name: chat, deployments: [up]}
cache: {enabled: false}
data_dir: DATA
"""
LIMITED = KeySpec(
    budget={"limit_usd": "1000000", "window": "month"},
    requests_per_minute=10_000_000,
    tokens_per_minute=10_000_000_000,
)
EXTRA = "budgets: [{scope: 'team:*', limit_tokens: 100000000000, window: day}]\n"


@dataclass
class Setup:
    label: str
    pipeline: Pipeline
    secret: str
    response_ms: list[float] = field(default_factory=list)
    full_ms: list[float] = field(default_factory=list)


async def open_setup(stack: AsyncExitStack, label: str, folder: Path, redis_url: str | None) -> Setup:
    text = CONFIG.replace("DATA", str(folder / label))
    if label != "baseline":
        text += EXTRA
    if label == "redis":
        text += f"redis: {{url: '{redis_url}'}}\n"
    app = create_app(parse_config(text), key_store=MemoryKeyStore())
    await stack.enter_async_context(app.router.lifespan_context(app))
    pipeline: Pipeline = app.state.gateway.pipeline
    assert pipeline.limits.keys is not None
    _, secret = await pipeline.limits.keys.create(LIMITED if label != "baseline" else KeySpec())
    return Setup(label, pipeline, secret)


async def run_block(setup: Setup, requests: int, keep: bool) -> None:
    limits = setup.pipeline.limits
    assert limits.limiter is not None
    for n in range(requests):
        ctx = RequestContext(request_id=f"req_{n}", endpoint="chat", api_key=setup.secret)
        request = ChatRequest(model="chat", messages=[{"role": "user", "content": "hello"}], params=_params())
        started = time.perf_counter()
        await setup.pipeline.chat(ctx, request)
        answered = time.perf_counter()
        await limits.limiter.drain()
        done = time.perf_counter()
        if keep:
            setup.response_ms.append((answered - started) * 1000)
            setup.full_ms.append((done - started) * 1000)


def _params() -> dict[str, Any]:
    return {"max_tokens": 16}


async def main(requests: int) -> int:
    """The setups run in interleaved blocks of 100 requests, so drift on a shared machine hits all alike."""
    with tempfile.TemporaryDirectory(prefix="margin-bench-limits-") as tmp, redis_server() as redis_url:
        labels = ["baseline", "sqlite"] + (["redis"] if redis_url else [])
        if redis_url is None:
            print("redis-server not installed: skipping the Redis setup")
        async with AsyncExitStack() as stack:
            setups = [await open_setup(stack, label, Path(tmp), redis_url) for label in labels]
            for setup in setups:
                await run_block(setup, 300, keep=False)  # warm-up
            for _ in range(max(1, requests // 100)):
                for setup in setups:
                    await run_block(setup, 100, keep=True)
    base = setups[0]
    base_resp, base_full = statistics.median(base.response_ms), statistics.median(base.full_ms)
    print(f"{'setup':<10}{'p50 response ms':>17}{'p50 full ms':>13}{'added (response)':>19}{'added (full)':>15}")
    failed = 0
    for setup in setups:
        resp, whole = statistics.median(setup.response_ms), statistics.median(setup.full_ms)
        added, added_full = resp - base_resp, whole - base_full
        verdict = ""
        if setup.label in TARGETS_MS:
            ok = added <= TARGETS_MS[setup.label]
            failed += not ok
            verdict = f"  target <= {TARGETS_MS[setup.label]} ms: {'ok' if ok else 'MISSED'}"
        print(f"{setup.label:<10}{resp:>17.3f}{whole:>13.3f}{added:>+19.3f}{added_full:>+15.3f}{verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    raise SystemExit(asyncio.run(main(parser.parse_args().requests)))
