"""Where one client's added latency is: the bare proxy and margin with metering on, its journal off,
and metering off, side by side (issue 27, docs/performance.md "Third pass").

Each target gets `--n` sequential non-streaming requests a round, rounds alternating the order; the
table gives each one's p50, what it adds over the bare proxy, margin's own `x-margin-overhead-ms`
(p50) and CPU ms per request. A part that costs CPU but not p50 runs after the response is written.

    flock /tmp/margin-bench.lock python bench/c1_parts.py [--src OLD/src] [--rounds 5] [--n 200]   # ~15 s
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack

import aiohttp
from bare_compare import BODY, HEADERS
from harness import bare_proxy, cpu_seconds, fake_upstream, gateway, gateway_config

VARIANTS: dict[str, Callable[[str], str]] = {
    "margin": gateway_config,
    "journal off": lambda upstream: gateway_config(upstream, journal=False),
    "metering off": lambda upstream: gateway_config(upstream, ledger=False),
}


async def one_client(session: aiohttp.ClientSession, url: str, n: int) -> tuple[list[float], list[float]]:
    """(latencies ms, margin's overhead header ms) of `n` sequential requests."""
    latencies: list[float] = []
    overheads: list[float] = []
    for _ in range(n):
        started = time.perf_counter()
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            await response.read()
            assert response.status == 200, response.status
            if "x-margin-overhead-ms" in response.headers:
                overheads.append(float(response.headers["x-margin-overhead-ms"]))
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies, overheads


async def run(src: str | None, rounds: int, n: int) -> None:
    gc.collect()
    gc.freeze()  # the load generator's own collections would be everyone's outliers
    gc.set_threshold(100_000, 50, 1000)
    print(f"load before: {uptime()}", flush=True)
    with ExitStack() as stack:
        upstream = stack.enter_context(fake_upstream(1))
        targets = {"bare": stack.enter_context(bare_proxy(upstream))}
        for name, config in VARIANTS.items():
            base, pid, _ = stack.enter_context(gateway(config(upstream), src=src))
            targets[name] = (base, pid)
        latency: dict[str, list[float]] = {name: [] for name in targets}
        overhead: dict[str, list[float]] = {name: [] for name in targets}
        cpu = dict.fromkeys(targets, 0.0)
        async with aiohttp.ClientSession() as session:
            for base, _ in targets.values():  # warm up: pools, first-use paths
                await one_client(session, f"{base}/v1/chat/completions", n)
            for r in range(rounds):
                for name in list(targets) if r % 2 == 0 else list(targets)[::-1]:
                    base, pid = targets[name]
                    cpu0 = cpu_seconds(pid)
                    times, marks = await one_client(session, f"{base}/v1/chat/completions", n)
                    cpu[name] += cpu_seconds(pid) - cpu0
                    latency[name] += times
                    overhead[name] += marks
    bare = statistics.median(latency["bare"])
    print(f"{'target':14} {'p50 ms':>8} {'added':>8} {'own ms':>8} {'CPU ms/req':>11}")
    for name in targets:
        p50, own = statistics.median(latency[name]), statistics.median(overhead[name] or [0.0])
        print(f"{name:14} {p50:8.3f} {p50 - bare:8.3f} {own:8.3f} {cpu[name] / len(latency[name]) * 1000:11.3f}")
    print(f"load after: {uptime()}")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", help="run margin from this source tree (its src/)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=200, help="requests per target and round")
    args = parser.parse_args()
    asyncio.run(run(args.src, args.rounds, args.n))


if __name__ == "__main__":
    main()
