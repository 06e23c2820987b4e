"""An exact-cache hit end to end on loopback, per backend, against the same request's miss and the
upstream called directly, measured in one run.

The gateway is pinned to core 0; the fake upstream, redis-server and this client share core 1. For
each backend (memory, sqlite, redis) one `margin serve` answers a deterministic request once (the
miss that fills the cache), then `--requests` sequential hits over one keep-alive connection are
timed client side, interleaved with the same request marked `no-cache` (a miss to the upstream)
and with the upstream called directly. The client is a raw loopback socket writing pre-encoded
requests, so the figures are the servers' time plus the kernel's, not an HTTP library's.

    python bench/cache_hit.py [--requests 2000]

Target (issue 8): a hit served in <= 1 ms p50 end to end on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack

import orjson

sys.path.insert(0, os.path.dirname(__file__))
from harness import fake_upstream, gateway, gateway_config, percentile, redis_server

TARGET_MS = 1.0
BODY = orjson.dumps(
    {
        "model": "bench",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "Answer in one short paragraph."},
            {"role": "user", "content": "What does an exact cache key have to cover?"},
        ],
    }
)


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a fixed request and reads whole responses."""

    def __init__(self, url: str, extra_header: str = "") -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: {self.host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(BODY)}\r\n{extra_header}\r\n"
        )
        self.request = head.encode() + BODY

    async def __aenter__(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.writer.close()

    async def timed(self) -> tuple[float, str]:
        """(milliseconds, x-margin-cache header) of one round trip."""
        started = time.perf_counter()
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode("latin-1").lower().split("\r\n")[1:] if ": " in line)
        await self.reader.readexactly(int(headers["content-length"]))
        elapsed = (time.perf_counter() - started) * 1000
        assert head.startswith(b"HTTP/1.1 200"), head[:40]
        return elapsed, headers.get("x-margin-cache", "")


async def measure(gateway_url: str, upstream: str, requests: int) -> dict[str, list[float]]:
    """Hits, no-cache misses and direct upstream calls, interleaved so drift hits all alike."""
    out: dict[str, list[float]] = {"hit": [], "miss": [], "direct": []}
    async with (
        Connection(gateway_url) as hits,
        Connection(gateway_url, "x-margin-cache: no-cache\r\n") as misses,
        Connection(upstream) as direct,
    ):
        await hits.timed()  # the miss that fills the cache
        await asyncio.sleep(0.2)  # cache writes happen after the response
        for i in range(requests + 100):
            hit_ms, kind = await hits.timed()
            assert kind == "exact", kind
            miss_ms, kind = await misses.timed()
            assert kind == "miss", kind
            direct_ms, _ = await direct.timed()
            if i >= 100:  # warm-up excluded
                out["hit"].append(hit_ms)
                out["miss"].append(miss_ms)
                out["direct"].append(direct_ms)
    return out


def configs(upstream: str, redis_url: str | None) -> Iterator[tuple[str, str]]:
    base = gateway_config(upstream)
    yield "memory", base + "cache: {backend: memory}\n"
    yield "sqlite", base + "cache: {backend: sqlite}\n"
    if redis_url is not None:
        yield "redis", base + f"redis: {{url: '{redis_url}'}}\ncache: {{backend: redis}}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    print(f"{'backend':8} {'hit p50':>8} {'hit p99':>8} {'miss p50':>9} {'upstream p50':>13} {'hit/direct':>10}")
    failed = False
    with ExitStack() as stack:
        upstream = stack.enter_context(fake_upstream())
        redis_url = stack.enter_context(redis_server())
        for name, config in configs(upstream, redis_url):
            with gateway(config) as (url, _, _):
                figures = asyncio.run(measure(url, upstream, args.requests))
            hit, miss, direct = (percentile(figures[k], 50) for k in ("hit", "miss", "direct"))
            failed |= hit > TARGET_MS
            print(
                f"{name:8} {hit:8.3f} {percentile(figures['hit'], 99):8.3f} {miss:9.3f} {direct:13.3f} "
                f"{hit / direct:9.2f}x"
            )
        if redis_url is None:
            print("redis    (redis-server not installed: skipped)")
    print(f"times in ms, client side, one keep-alive connection; target: hit p50 <= {TARGET_MS} ms")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
