"""What the stream buffer (`streaming.buffer_first_tokens`) costs in time to first token, in one run.

One gateway, one paced fake upstream (a token every `--pace-ms`), three model groups over the same
deployment: no buffer, a buffer of `--tokens` tokens, and the same buffer capped by `--max-ms`.
Requests are interleaved so drift hits every group alike. For each group it prints, at p50 and p90:
TTFB (the response's first byte: headers and first event) and TTFT (the first event with content),
and the buffered TTFT as a ratio of the unbuffered one. Expected: the buffer adds about
(tokens - 1) x pace to TTFT, the cap bounds that at max-ms, and the total time does not change.

    python bench/stream_buffer.py [--requests 40] [--tokens 8] [--pace-ms 20] [--max-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

sys.path.insert(0, os.path.dirname(__file__))
from harness import fake_upstream, gateway, percentile

# 16 content events of 4 characters: one counted token each (the estimator counts 4 bytes a token).
PROMPT = "abc " * 16
CHUNKS = 16


def config(upstream: str, tokens: int, max_ms: float) -> str:
    return f"""
deployments:
  - {{name: paced, provider: openai_compat, model: paced, base_url: "{upstream}/v1",
     price: {{input: "0.15", output: "0.60"}}}}
models:
  - {{name: plain, deployments: [paced]}}
  - {{name: buffered, deployments: [paced], streaming: {{buffer_first_tokens: {tokens}}}}}
  - {{name: capped, deployments: [paced], streaming: {{buffer_first_tokens: {tokens}, buffer_max_ms: {max_ms}}}}}
"""


@dataclass
class Timings:
    ttfb: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)


async def one(session: aiohttp.ClientSession, url: str, model: str, into: Timings) -> None:
    body = orjson.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": PROMPT}]})
    started = time.perf_counter()
    first_byte = first_token = None
    text = []
    async with session.post(url, data=body, headers={"content-type": "application/json"}) as response:
        assert response.status == 200, response.status
        async for line in response.content:
            first_byte = first_byte or time.perf_counter()
            if not line.startswith(b"data: {"):
                continue
            for choice in orjson.loads(line[6:]).get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    first_token = first_token or time.perf_counter()
                    text.append(content)
    assert "".join(text) == PROMPT, "".join(text)
    assert first_byte is not None and first_token is not None
    into.ttfb.append((first_byte - started) * 1000)
    into.ttft.append((first_token - started) * 1000)
    into.total.append((time.perf_counter() - started) * 1000)


async def main(requests: int, tokens: int, pace_ms: float, max_ms: float) -> None:
    groups = {"plain": Timings(), "buffered": Timings(), "capped": Timings()}
    extra = ("--chunks", str(CHUNKS), "--chunk-delay-ms", str(pace_ms))
    with fake_upstream(1, *extra) as upstream, gateway(config(upstream, tokens, max_ms)) as (base, _, _):
        url = f"{base}/v1/chat/completions"
        async with aiohttp.ClientSession() as session:
            for model in groups:  # warm up
                await one(session, url, model, Timings())
            for _ in range(requests):
                for model, timings in groups.items():
                    await one(session, url, model, timings)
    plain = percentile(groups["plain"].ttft, 50)
    print(f"{CHUNKS} tokens paced {pace_ms:g} ms apart; buffer {tokens} tokens, cap {max_ms:g} ms; {requests} each")
    print(f"{'group':10s} {'TTFB p50':>10s} {'TTFB p90':>10s} {'TTFT p50':>10s} {'TTFT p90':>10s} {'total p50':>10s}")
    for model, t in groups.items():
        cells = [percentile(t.ttfb, 50), percentile(t.ttfb, 90), percentile(t.ttft, 50), percentile(t.ttft, 90)]
        print(f"{model:10s} " + " ".join(f"{v:10.1f}" for v in cells) + f" {percentile(t.total, 50):10.1f}")
    for model in ("buffered", "capped"):
        ttft = percentile(groups[model].ttft, 50)
        print(f"{model} / plain TTFT p50: {ttft / plain:.2f}x (+{ttft - plain:.1f} ms)")
    print(f"expected added TTFT without the cap: about {(tokens - 1) * pace_ms:.0f} ms; with it: at most {max_ms:g} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--pace-ms", type=float, default=20.0)
    parser.add_argument("--max-ms", type=float, default=50.0)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.tokens, args.pace_ms, args.max_ms))
