"""Two margin source trees, interleaved: one client's stream TTFB, plain latency and CPU, and with
`--loaded S` also 64 clients' req/s and CPU per request (plain and streamed, S seconds a round).

bench/overhead.py measures one-client stream TTFB in two rounds per target, which a shared machine's
drift can swing by tens of percent; this runs more, shorter rounds, alternating which tree goes
first, against one fake upstream, both gateways pinned to core 0 (bench/harness.py).

    flock /tmp/margin-bench.lock python bench/c1_ab.py --a /path/new/src --b /path/old/src   # ~30 s
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
from contextlib import ExitStack

import aiohttp
from bare_compare import BODY, STREAM, Load, Target, closed_loop, one_client
from harness import cpu_seconds, fake_upstream, gateway, gateway_config, percentile


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


async def loaded(targets: dict[str, Target], rounds: int, seconds: float) -> None:
    """64 clients, plain then streamed, rounds alternating which tree goes first."""
    for body, kind in ((BODY, "plain"), (STREAM, "stream")):
        loads: dict[str, list[Load]] = {name: [] for name in targets}
        for r in range(rounds):
            for name in list(targets) if r % 2 == 0 else list(targets)[::-1]:
                loads[name].append(await closed_loop(targets[name], body, seconds))
        merged = {name: Load.merge(runs) for name, runs in loads.items()}
        for name, load in merged.items():
            print(f"{name}: c=64 {kind} {load.rps:.0f} req/s, CPU ms/request {load.cpu_ms:.3f}")
        a, b = list(targets)
        rps, cpu = merged[a].rps / merged[b].rps, merged[a].cpu_ms / merged[b].cpu_ms
        print(f"{a}/{b}: c=64 {kind} req/s {rps:.3f}, CPU {cpu:.3f}")


async def run(trees: dict[str, str], rounds: int, n: int, loaded_s: float) -> None:
    gc.collect()
    gc.freeze()  # the load generator's own collections would be everyone's outliers
    gc.set_threshold(100_000, 50, 1000)
    print(f"load before: {uptime()}", flush=True)
    ttfb: dict[str, list[float]] = {name: [] for name in trees}
    plain: dict[str, list[float]] = {name: [] for name in trees}
    cpu = dict.fromkeys(trees, 0.0)
    with ExitStack() as stack:
        upstream = stack.enter_context(fake_upstream(1, "--chunks", "16"))
        started = {name: stack.enter_context(gateway(gateway_config(upstream), src=src)) for name, src in trees.items()}
        urls = {name: (f"{base}/v1/chat/completions", pid) for name, (base, pid, _) in started.items()}
        async with aiohttp.ClientSession() as session:
            for url, _ in urls.values():  # warm up: pools, first-use paths
                await one_client(session, url, BODY, 200, False)
                await one_client(session, url, STREAM, 100, True)
            for r in range(rounds):
                for name in list(urls) if r % 2 == 0 else list(urls)[::-1]:
                    url, pid = urls[name]
                    cpu0 = cpu_seconds(pid)
                    ttfb[name].append(statistics.median(await one_client(session, url, STREAM, n, True)))
                    plain[name] += await one_client(session, url, BODY, n, False)
                    cpu[name] += cpu_seconds(pid) - cpu0
            if loaded_s:
                await loaded(
                    {name: Target(name, base, pid) for name, (base, pid, _) in started.items()}, rounds, loaded_s
                )
    for name in trees:
        rounds_text = ", ".join(f"{x:.2f}" for x in ttfb[name])
        cpu_ms = cpu[name] / (2 * n * rounds) * 1000
        print(f"{name}: stream TTFB median of round medians {statistics.median(ttfb[name]):.3f} ms ({rounds_text}); "
              f"plain p50 {percentile(plain[name], 50):.3f} ms; CPU ms/request {cpu_ms:.3f}")  # fmt: skip
    a, b = list(trees)
    ttfb_ratio = statistics.median(ttfb[a]) / statistics.median(ttfb[b])
    plain_ratio = percentile(plain[a], 50) / percentile(plain[b], 50)
    print(f"{a}/{b}: TTFB {ttfb_ratio:.3f}, plain p50 {plain_ratio:.3f}, CPU {cpu[a] / cpu[b]:.3f}")
    print(f"load after: {uptime()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="margin source tree (its src/) measured first in even rounds")
    parser.add_argument("--b", required=True, help="the other source tree")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--n", type=int, default=150, help="streams, then plain requests, per round and tree")
    parser.add_argument("--loaded", type=float, default=0.0, help="seconds per 64-client round (0: none)")
    args = parser.parse_args()
    asyncio.run(run({"a": args.a, "b": args.b}, args.rounds, args.n, args.loaded))


if __name__ == "__main__":
    main()
