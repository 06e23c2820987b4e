"""`margin serve --workers 2` against one worker, in one run (issue 27: >= 1.8x on two cores).

Two gateways run side by side on the embedded default's stores (SQLite ledger and counters, each
gateway its own data dir), one with `--workers 1` pinned to one core and one with `--workers 2`
pinned to two; rounds alternate between them so drift hits both. The fake upstream gets its own
core and the load generator (several client processes, one per remaining core) the rest, when the
machine has them: with 5+ cores the gateway cores are 0-1, the upstream core 2, clients 3+. With
fewer cores they share, which caps what the second worker can show (the figure then says more
about the machine than about margin): the core assignment is printed with the figures.

Each gateway meters every request into its ledger and, with `--limits` (the default), holds a
global budget and a global rate limit large enough never to refuse, so every request reserves and
settles in the shared SQLite counters: the cross-worker state is exercised, not bypassed.

    flock /tmp/margin-bench.lock python bench/workers.py [--seconds 6] [--rounds 2] [--concurrency 64] [--no-limits]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, os.path.dirname(__file__))
from harness import cpu_seconds, fake_upstream, free_port, process

BODY = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "Say hello to the benchmark."}]})
LIMITS = """
budgets:
  - {scope: global, limit_usd: 1000000, window: month}
rate_limits:
  - {scope: global, requests_per_minute: 100000000}
"""


def config(upstream: str, limits: bool) -> str:
    return f"""
deployments:
  - {{name: upstream, provider: openai_compat, model: fake-bench, base_url: "{upstream}/v1",
     price: {{input: "0.15", output: "0.60"}}}}
models:
  - {{name: bench, deployments: [upstream]}}
{LIMITS if limits else ""}"""


def cores() -> tuple[list[int], int, list[int]]:
    """(gateway cores, upstream core, client cores) on this machine."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) >= 5:
        return available[:2], available[2], available[3:]
    if len(available) >= 2:
        return available[:2], available[-1], available[:]  # shared: the figure is machine-bound
    return available * 2, available[0], available


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live children (uvicorn's workers)."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += tree_cpu(int(child))
    return total


@contextmanager
def gateway(yaml: str, workers: int, gateway_cores: list[int]) -> Iterator[tuple[str, int]]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "margin.yaml"
        path.write_text(yaml)
        args = [sys.executable, "-m", "margin", "serve", "--config", str(path), "--port", str(port)]
        args += ["--workers", str(workers), "--log-level", "warning"]
        pinned = ["taskset", "-c", ",".join(map(str, gateway_cores)), *args]
        with process(pinned, f"http://127.0.0.1:{port}/healthz", env={"MARGIN_DATA_DIR": tmp}) as (proc, _):
            yield f"http://127.0.0.1:{port}", proc.pid


async def client(url: str, seconds: float, concurrency: int) -> int:
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.post(url, data=BODY, headers={"content-type": "application/json"}) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{r.status}: {await r.text()}")
                done += 1

        await asyncio.gather(*(one() for _ in range(concurrency)))
    return done


def load(url: str, seconds: float, concurrency: int, client_cores: list[int]) -> float:
    """req/s from one client process per client core, `concurrency` connections in all."""
    share = [concurrency // len(client_cores) + (i < concurrency % len(client_cores)) for i in range(len(client_cores))]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                "taskset",
                "-c",
                str(core),
                sys.executable,
                __file__,
                "--client",
                url,
                "--seconds",
                str(seconds),
                "--concurrency",
                str(n),
            ],
            stdout=subprocess.PIPE,
        )
        for core, n in zip(client_cores, share, strict=True)
        if n
    ]
    counts = [int(p.communicate()[0]) for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError("a client process failed")
    return sum(counts) / (time.perf_counter() - started)


def main(seconds: float, rounds: int, concurrency: int, limits: bool) -> None:
    gateway_cores, upstream_core, client_cores = cores()
    print(f"uptime: {os.getloadavg()}; {os.cpu_count()} cores: gateway {gateway_cores}, upstream {upstream_core}, "
          f"clients {client_cores}; c={concurrency}; limits {'on' if limits else 'off'}")  # fmt: skip
    if len(set(gateway_cores) | {upstream_core} | set(client_cores)) < len(gateway_cores) + 1 + len(client_cores):
        print("cores shared between the gateway, the upstream and the clients: rerun on 5+ cores for the target")
    rates: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    with ExitStack() as stack:
        upstream = stack.enter_context(fake_upstream(upstream_core))
        yaml = config(upstream, limits)
        gateways = {n: stack.enter_context(gateway(yaml, n, gateway_cores[:n])) for n in (1, 2)}
        for base, _ in gateways.values():
            load(f"{base}/v1/chat/completions", 1.0, concurrency, client_cores)  # warm-up
        for round_ in range(rounds):
            for n in (1, 2) if round_ % 2 == 0 else (2, 1):
                base, pid = gateways[n]
                cpu0 = tree_cpu(pid)
                rate = load(f"{base}/v1/chat/completions", seconds, concurrency, client_cores)
                cpu[n].append((tree_cpu(pid) - cpu0) / (rate * seconds) * 1000)
                rates[n].append(rate)
    for n in (1, 2):
        each = " ".join(f"{r:.0f}" for r in rates[n])
        print(f"workers={n}: req/s median {statistics.median(rates[n]):.0f} (rounds: {each}); "
              f"gateway CPU/request {statistics.median(cpu[n]):.3f} ms")  # fmt: skip
    ratios = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
    ratio = statistics.median(ratios)
    rounds_text = " ".join(f"{r:.2f}" for r in ratios)
    print(f"2 workers / 1 worker req/s: median {ratio:.2f} (rounds: {rounds_text}) [target >= 1.8]")
    print(f"uptime after: {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--limits", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--client", help=argparse.SUPPRESS)  # a load-generator process (internal)
    args = parser.parse_args()
    if args.client:
        print(asyncio.run(client(args.client, args.seconds, args.concurrency)))
    else:
        main(args.seconds, args.rounds, args.concurrency, args.limits)
