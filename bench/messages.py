"""`/v1/messages` (Anthropic wire) against `/v1/chat/completions` (OpenAI wire), in one run.

One gateway (pinned to core 0) in front of the fake upstream; the upstream and this load generator
share core 1. The same prompt goes in on both wires, in alternating rounds of `--seconds` each at
`--concurrency` clients (default 64), non-streaming and streaming, so drift and the machine's other
load hit both wires alike. Prints req/s and the gateway's CPU per request on each wire and the
messages/chat ratio (issue 27's target: >= 0.9).

`--upstream openai` (default): the model's deployment is `openai_compat`, so a messages request is
translated Anthropic -> chat on the way in and chat -> Anthropic on the way out (the SSE re-encoded).
`--upstream anthropic`: the deployment is `anthropic` (the fake upstream's own `/v1/messages`), so
the chat request is the one translated, both ways.

    flock /tmp/margin-bench.lock python bench/messages.py [--seconds 4] [--rounds 3] [--upstream openai]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

import aiohttp
import orjson

sys.path.insert(0, os.path.dirname(__file__))
from harness import cpu_seconds, fake_upstream, gateway

PROMPT = "Say hello to the benchmark."
CHAT = {"model": "bench", "messages": [{"role": "user", "content": PROMPT}]}
MESSAGES = {"model": "bench", "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]}
HEADERS = {"content-type": "application/json", "anthropic-version": "2023-06-01"}


def config(upstream: str, wire: str) -> str:
    provider = "openai_compat" if wire == "openai" else "anthropic"
    base = f"{upstream}/v1" if wire == "openai" else upstream
    key = "" if wire == "openai" else ", api_key: fake-key"
    return f"""
deployments:
  - {{name: upstream, provider: {provider}, model: fake-bench, base_url: "{base}"{key},
     price: {{input: "0.15", output: "0.60"}}}}
models:
  - {{name: bench, deployments: [upstream]}}
"""


async def throughput(url: str, body: bytes, seconds: float, concurrency: int) -> tuple[int, float]:
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def client() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.post(url, data=body, headers=HEADERS) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: {response.status} {await response.text()}")
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return done, time.perf_counter() - started


async def compare(base: str, pid: int, stream: bool, seconds: float, rounds: int, concurrency: int) -> None:
    wires = {
        "chat": (f"{base}/v1/chat/completions", orjson.dumps({**CHAT, "stream": stream})),
        "messages": (f"{base}/v1/messages", orjson.dumps({**MESSAGES, "stream": stream})),
    }
    rates: dict[str, list[float]] = {name: [] for name in wires}
    cpu: dict[str, list[float]] = {name: [] for name in wires}
    for url, body in wires.values():
        await throughput(url, body, 1.0, concurrency)  # warm-up
    for round_ in range(rounds):
        order = list(wires) if round_ % 2 == 0 else list(reversed(wires))
        for name in order:
            url, body = wires[name]
            cpu0 = cpu_seconds(pid)
            count, elapsed = await throughput(url, body, seconds, concurrency)
            cpu[name].append((cpu_seconds(pid) - cpu0) * 1000 / count)
            rates[name].append(count / elapsed)
    kind = "stream" if stream else "non-stream"
    for name in wires:
        each = " ".join(f"{r:.0f}" for r in rates[name])
        print(
            f"{kind:10s} {name:8s} req/s median {statistics.median(rates[name]):7.0f} (rounds: {each}); "
            f"CPU/request {statistics.median(cpu[name]):.3f} ms"
        )
    ratio = [m / c for m, c in zip(rates["messages"], rates["chat"], strict=True)]
    cpu_ratio = statistics.median(cpu["messages"]) / statistics.median(cpu["chat"])
    print(
        f"{kind:10s} messages/chat req/s ratio median {statistics.median(ratio):.3f} "
        f"(rounds: {' '.join(f'{r:.3f}' for r in ratio)}) [target >= 0.9]; CPU/request ratio {cpu_ratio:.3f}"
    )


async def main(seconds: float, rounds: int, concurrency: int, wire: str) -> None:
    print(f"load: {os.getloadavg()}; upstream wire: {wire}; c={concurrency}; {rounds} rounds x {seconds} s each wire")
    with fake_upstream(1, "--chunks", "16") as upstream, gateway(config(upstream, wire)) as (base, pid, _):
        for stream in (False, True):
            await compare(base, pid, stream, seconds, rounds, concurrency)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--upstream", choices=("openai", "anthropic"), default="openai")
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds, args.concurrency, args.upstream))
