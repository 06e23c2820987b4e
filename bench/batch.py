"""The batch tier's throughput against the live endpoint, in one run, on one gateway.

For each upstream latency: the same N chat requests sent by a client to /v1/chat/completions at
concurrency C (the live path), then submitted as one batch run with `batch.concurrency: C`; prints
lines per second of each and their ratio (issue 22's target: the batch at >= 90% of the client), and
the gateway's RSS before and at the end of the batch (files and results are streamed, so RSS should
not grow with N).

    python bench/batch.py [--lines 2000] [--concurrency 32] [--latencies-ms 0,200] [--batch-only]
    python bench/batch.py --interactive [--seconds 8]

`--interactive`: interactive p95 latency (4 clients, one request each at a time) on a gateway alone,
then beside a running batch with the back-off off, then with it on (`batch.yield_above_in_flight: 1`),
each on a fresh gateway in the same run.

The gateway is pinned to core 0, the fake upstream and this client to core 1 (bench/harness.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import aiohttp
import httpx
import orjson

sys.path.insert(0, os.path.dirname(__file__))
from harness import fake_upstream, gateway, gateway_config, rss_mb


def body(n: int, path: str) -> dict[str, object]:
    """Unique per line and per path, so neither run is answered from the other's cache entries."""
    return {"model": "bench", "messages": [{"role": "user", "content": f"{path} line {n}: say hello"}]}


async def live(base: str, lines: int, concurrency: int, path: str = "live") -> float:
    """Seconds for `lines` requests to the live endpoint, `concurrency` at a time (aiohttp: a client
    light enough that the gateway, not the client, sets the pace)."""
    queue = iter(range(lines))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=connector) as session:

        async def worker() -> None:
            for n in queue:
                async with session.post("/v1/chat/completions", data=orjson.dumps(body(n, path)),
                                        headers={"content-type": "application/json"}) as response:  # fmt: skip
                    response.raise_for_status()
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


def as_batch(base: str, lines: int, pid: int) -> tuple[float, float, float]:
    """Seconds from create to completed for one batch of `lines`, and RSS (MB) before and after."""
    content = b"".join(
        orjson.dumps({"custom_id": f"b{n}", "method": "POST", "url": "/v1/chat/completions", "body": body(n, "batch")})
        + b"\n"
        for n in range(lines)
    )
    with httpx.Client(base_url=base, timeout=120) as client:
        uploaded = client.post("/v1/files", files={"file": ("bench.jsonl", content)}, data={"purpose": "batch"})
        uploaded.raise_for_status()
        rss_before = rss_mb(pid)
        spec = {"input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        started = time.perf_counter()
        batch = client.post("/v1/batches", json=spec).json()
        while batch["status"] not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(0.05)
            batch = client.get(f"/v1/batches/{batch['id']}").json()
        elapsed = time.perf_counter() - started
        assert batch["status"] == "completed" and batch["request_counts"]["completed"] == lines, batch
        return elapsed, rss_before, rss_mb(pid)


def run(latency_ms: float, lines: int, concurrency: int, *, with_live: bool = True) -> None:
    faults = ("--fault", f"fake-bench=delay={latency_ms / 1000}") if latency_ms else ()
    with fake_upstream(1, *faults) as upstream:
        extra = f"batch: {{concurrency: {concurrency}, chunk_lines: 200, poll_s: 0.05}}"
        with gateway(gateway_config(upstream, extra=extra)) as (base, pid, _):
            asyncio.run(live(base, min(lines, 200), concurrency, "warm-up"))  # connections, code paths
            live_s = asyncio.run(live(base, lines, concurrency)) if with_live else float("nan")
            batch_s, rss_before, rss_after = as_batch(base, lines, pid)
    live_rate, batch_rate = lines / live_s, lines / batch_s
    print(
        f"latency {latency_ms:>5.0f} ms  lines {lines:>6}  concurrency {concurrency:>3}  "
        f"live {live_rate:8.1f}/s  batch {batch_rate:8.1f}/s  ratio {batch_rate / live_rate:5.2f}  "
        f"RSS {rss_before:6.1f} -> {rss_after:6.1f} MB (+{rss_after - rss_before:.1f})"
    )


def upload_and_start(client: httpx.Client, lines: int) -> str:
    content = b"".join(
        orjson.dumps({"custom_id": f"i{n}", "method": "POST", "url": "/v1/chat/completions", "body": body(n, "bg")})
        + b"\n"
        for n in range(lines)
    )
    uploaded = client.post("/v1/files", files={"file": ("bg.jsonl", content)}, data={"purpose": "batch"})
    spec = {"input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    batch_id: str = client.post("/v1/batches", json=spec).json()["id"]
    while client.get(f"/v1/batches/{batch_id}").json()["status"] == "validating":
        time.sleep(0.05)
    return batch_id


async def interactive_p95(base: str, seconds: float, clients: int = 4) -> tuple[float, int]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(base) as session:

        async def client(k: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                started = time.perf_counter()
                async with session.post("/v1/chat/completions", data=orjson.dumps(body(n, f"user{k}")),
                                        headers={"content-type": "application/json"}) as response:  # fmt: skip
                    await response.read()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(client(k) for k in range(clients)))
    latencies.sort()
    return latencies[int(0.95 * (len(latencies) - 1))] * 1000, len(latencies)


def interactive(seconds: float, concurrency: int) -> None:
    variants = [("alone", None), ("batch, back-off off", ""), ("batch, back-off on", ", yield_above_in_flight: 1")]
    with fake_upstream(1, "--fault", "fake-bench=delay=0.02") as upstream:
        for name, backoff in variants:
            extra = f"batch: {{concurrency: {concurrency}, chunk_lines: 200, poll_s: 0.05{backoff or ''}}}"
            with gateway(gateway_config(upstream, extra=extra)) as (base, _, _), httpx.Client(base_url=base) as c:
                batch_id = upload_and_start(c, 50_000) if backoff is not None else None
                asyncio.run(interactive_p95(base, 1.0))  # warm-up
                p95, count = asyncio.run(interactive_p95(base, seconds))
                ran = c.get(f"/v1/batches/{batch_id}").json()["request_counts"]["completed"] if batch_id else 0
            print(f"{name:<22} interactive p95 {p95:7.1f} ms over {count:>5} requests; batch lines run {ran:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latencies-ms", default="0,200")
    parser.add_argument("--batch-only", action="store_true", help="skip the live run (the memory check on a big N)")
    parser.add_argument("--interactive", action="store_true", help="interactive p95 beside a batch, back-off off/on")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    if args.interactive:
        interactive(args.seconds, args.concurrency)
        return
    for latency in (float(v) for v in args.latencies_ms.split(",")):
        run(latency, args.lines, args.concurrency, with_live=not args.batch_only)


if __name__ == "__main__":
    main()
