"""Gateway overhead vs calling the upstream directly and vs a bare ASGI proxy, measured in one run.

The default run (about 2 minutes) compares margin with bench/bare_proxy.py, the floor (issue 27;
bench/bare_compare.py): req/s at 64 clients non-streaming and streaming, CPU per request, added p50
at one client, stream TTFB added, added p99 at 64 clients, and the collector's pauses and the loop's
lag with margin's GC settings against Python's. `--detail` is the earlier default, below:
The gateway is pinned to core 0; the fake upstream and this load generator share core 1.
Prints: added latency p50/p99 at concurrency 1 (non-streaming), throughput and CPU per request at
concurrency 32, streaming time-to-first-byte overhead and CPU per chunk, idle RSS and start time;
and, side by side at concurrency 1 and 16, the overhead margin reports (the `x-margin-overhead-ms`
header and the `margin_overhead_seconds` histogram) against the added latency measured here.
`--journal-only` compares the replica journal on and off (docs/ledger.md), alone and with a Redis
budget (whose reservations then carry a durable intent and each attempt a mark in Redis).
`--tracing-only` compares OpenTelemetry tracing off and on at 100% sampling, exporting to a loopback
OTLP/HTTP collector (bench/otlp_sink.py), and what the tracing seam costs a request when off.

    python bench/overhead.py [--requests 1000] [--seconds 5]          # vs bare, one summary table
    python bench/overhead.py --detail [--requests 2000] [--seconds 10] [--concurrency 32]
    python bench/overhead.py [--journal-only | --tracing-only]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
import orjson

sys.path.insert(0, os.path.dirname(__file__))
import bare_compare
from harness import (
    cpu_seconds,
    fake_upstream,
    free_port,
    gateway,
    gateway_config,
    overhead_histogram,
    percentile,
    process,
    redis_server,
    rss_mb,
)

REPORTED_CONCURRENCY = 16  # where issue 14 saw the header read 10-100x below the added latency
TRACING = "tracing: {{enabled: true, endpoint: {sink}/v1/traces, sample_ratio: 1.0}}"
# a non-streamed request's spans: itself, auth, route, limits, cache, its attempt, meter, record
TRACED_SPANS = 8
ROUNDS = 16

BODY = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "Say hello to the benchmark."}]})
LONG_STREAM_BODY = orjson.dumps(
    {
        "model": "bench-long",
        "stream": True,
        "messages": [{"role": "user", "content": "Stream sixteen pieces of text back please " * 8}],
    }
)
STREAM_BODY = orjson.dumps(
    {
        "model": "bench",
        "stream": True,
        "messages": [{"role": "user", "content": "Stream sixteen pieces of text back please"}],
    }
)


async def latencies(
    session: aiohttp.ClientSession, url: str, body: bytes, n: int, reported: list[float] | None = None
) -> list[float]:
    """Client-side latencies (ms); `reported` collects the x-margin-overhead-ms headers."""
    out = []
    for _ in range(n):
        started = time.perf_counter()
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as response:
            await response.read()
            assert response.status == 200, response.status
        out.append((time.perf_counter() - started) * 1000)
        if reported is not None:
            reported.append(float(response.headers["x-margin-overhead-ms"]))
    return out


@dataclass
class SideBySide:
    """One run of interleaved direct and via-margin calls, and what margin reported for its calls."""

    direct: list[float] = field(default_factory=list)
    via: list[float] = field(default_factory=list)
    header: list[float] = field(default_factory=list)
    metric_mean_ms: float = float("nan")


async def side_by_side(direct: str, via: str, base: str, concurrency: int, rounds: int) -> SideBySide:
    """Each client alternates a direct call and a call through margin, so load and noise hit both."""
    run = SideBySide()
    before = overhead_histogram(base)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def client(index: int) -> None:
            for n in range(rounds):
                first_direct = (index + n) % 2 == 0
                for is_direct in (first_direct, not first_direct):
                    if is_direct:
                        run.direct += await latencies(session, direct, BODY, 1)
                    else:
                        run.via += await latencies(session, via, BODY, 1, run.header)

        await asyncio.gather(*(client(i) for i in range(concurrency)))
    after = overhead_histogram(base)
    run.metric_mean_ms = (after[0] - before[0]) / max(after[1] - before[1], 1) * 1000
    return run


def side_by_side_rows(label: str, run: SideBySide) -> list[tuple[str, str]]:
    mean = statistics.fmean
    added_p50 = percentile(run.via, 50) - percentile(run.direct, 50)
    added_mean = mean(run.via) - mean(run.direct)
    return [
        (f"{label} added latency measured p50 / mean (ms)", f"{added_p50:.3f} / {added_mean:.3f}"),
        (f"{label} x-margin-overhead-ms p50 / mean (ms)", f"{percentile(run.header, 50):.3f} / {mean(run.header):.3f}"),
        (f"{label} margin_overhead_seconds mean (ms)", f"{run.metric_mean_ms:.3f}"),
    ]


async def ttfb(session: aiohttp.ClientSession, url: str, body: bytes, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as response:
            await response.content.readany()
            out.append((time.perf_counter() - started) * 1000)
            await response.read()
    return out


async def throughput(url: str, body: bytes, seconds: float, concurrency: int) -> tuple[int, float]:
    done = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
                    await r.read()
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done, time.perf_counter() - started


async def main(requests: int, seconds: float, concurrency: int) -> None:
    with (
        fake_upstream(1, "--chunks", "16") as upstream,
        fake_upstream(1, "--chunks", "128") as long_upstream,
        gateway(gateway_config(upstream, long_upstream=long_upstream)) as (base, pid, start_s),
    ):
        direct, via = f"{upstream}/v1/chat/completions", f"{base}/v1/chat/completions"
        idle_rss = rss_mb(pid)
        async with aiohttp.ClientSession() as session:
            await latencies(session, via, BODY, 200)  # warm up both paths
            await latencies(session, direct, BODY, 200)
            d: list[float] = []
            g: list[float] = []
            reported: list[float] = []  # x-margin-overhead-ms of the calls through margin
            for _ in range(4):  # interleave so drift hits both sides equally
                d += await latencies(session, direct, BODY, requests // 4)
                g += await latencies(session, via, BODY, requests // 4, reported)
            sd = await ttfb(session, direct, STREAM_BODY, requests // 4)
            sg = await ttfb(session, via, STREAM_BODY, requests // 4)
            # Per-chunk CPU at the margin: the same streams with 16 and with 128 content events, so
            # the per-request work (parsing, routing, ledger row) cancels out.
            n_stream = requests // 4
            cpu0 = cpu_seconds(pid)
            await ttfb(session, via, STREAM_BODY, n_stream)
            short_ms = (cpu_seconds(pid) - cpu0) * 1000
            cpu0 = cpu_seconds(pid)
            await ttfb(session, via, LONG_STREAM_BODY, n_stream)
            long_ms = (cpu_seconds(pid) - cpu0) * 1000
            per_chunk_ms = (long_ms - short_ms) / (n_stream * (128 - 16))
        rounds = max(1, requests // 4 // REPORTED_CONCURRENCY)
        loaded = await side_by_side(direct, via, base, REPORTED_CONCURRENCY, rounds)
        direct_rps = await throughput(direct, BODY, seconds / 2, concurrency)
        cpu0 = cpu_seconds(pid)
        count, elapsed = await throughput(via, BODY, seconds, concurrency)
        cpu_ms = (cpu_seconds(pid) - cpu0) * 1000
        rss_after = rss_mb(pid)

    print(f"{'metric':48s} {'value':>12s}")
    rows = [
        ("non-stream c=1 direct p50 / p99 (ms)", f"{percentile(d, 50):.3f} / {percentile(d, 99):.3f}"),
        ("non-stream c=1 via margin p50 / p99 (ms)", f"{percentile(g, 50):.3f} / {percentile(g, 99):.3f}"),
        ("added latency p50 (ms)  [target <= 1.5]", f"{percentile(g, 50) - percentile(d, 50):.3f}"),
        ("added latency p99 (ms)  [target <= 5]", f"{percentile(g, 99) - percentile(d, 99):.3f}"),
        (
            "x-margin-overhead-ms c=1 p50 / mean (ms)",
            f"{percentile(reported, 50):.3f} / {statistics.fmean(reported):.3f}",
        ),
        *side_by_side_rows(f"non-stream c={REPORTED_CONCURRENCY}", loaded),
        (f"throughput c={concurrency} direct (req/s)", f"{direct_rps[0] / direct_rps[1]:.0f}"),
        (f"throughput c={concurrency} via margin, 1 core (req/s)  [>= 1000]", f"{count / elapsed:.0f}"),
        ("gateway CPU per request (ms)", f"{cpu_ms / max(count, 1):.3f}"),
        ("gateway CPU-bound capacity (req/s per core)", f"{count / (cpu_ms / 1000):.0f}"),
        ("stream TTFB direct p50 (ms)", f"{percentile(sd, 50):.3f}"),
        ("stream TTFB via margin p50 (ms)", f"{percentile(sg, 50):.3f}"),
        ("stream TTFB overhead p50 (ms)  [target <= 2]", f"{percentile(sg, 50) - percentile(sd, 50):.3f}"),
        (
            "gateway CPU per streamed chunk (ms, marginal)  [<= 0.1]",
            f"{per_chunk_ms:.4f}",
        ),
        ("idle RSS (MB)  [target <= 150]", f"{idle_rss:.1f}"),
        ("RSS after load (MB)", f"{rss_after:.1f}"),
        ("start to ready (s)  [target <= 2]", f"{start_s:.2f}"),
    ]
    for name, value in rows:
        print(f"{name:60s} {value:>16s}")
    await ledger_cost(requests)


async def ledger_cost(requests: int) -> None:
    """Metering + ledger on vs off: two gateways on the same core, requests interleaved."""
    with (
        fake_upstream(1) as upstream,
        gateway(gateway_config(upstream, ledger=True)) as (with_ledger, pid_on, _),
        gateway(gateway_config(upstream, ledger=False)) as (without, pid_off, _),
    ):
        on, off = [], []
        async with aiohttp.ClientSession() as session:
            await latencies(session, f"{with_ledger}/v1/chat/completions", BODY, 200)
            await latencies(session, f"{without}/v1/chat/completions", BODY, 200)
            cpu_on0, cpu_off0 = cpu_seconds(pid_on), cpu_seconds(pid_off)
            for _ in range(8):
                on += await latencies(session, f"{with_ledger}/v1/chat/completions", BODY, requests // 8)
                off += await latencies(session, f"{without}/v1/chat/completions", BODY, requests // 8)
            cpu_on, cpu_off = cpu_seconds(pid_on) - cpu_on0, cpu_seconds(pid_off) - cpu_off0
    print(f"{'metering+ledger added p50 (ms)  [target <= 0.2]':60s} {percentile(on, 50) - percentile(off, 50):>16.3f}")
    per_request = (cpu_on - cpu_off) * 1000 / len(on)
    print(f"{'metering+ledger CPU per request (ms, off the request path)':60s} {per_request:>16.3f}")


async def journal_cost(requests: int, extra: str = "", label: str = "journal") -> None:
    """The replica journal on vs off: two gateways on the same core, requests interleaved, at c=1
    (added latency) and c=16 (throughput and CPU, where group fsyncs share the disk's time)."""
    with (
        fake_upstream(1) as upstream,
        gateway(gateway_config(upstream, journal=True, extra=extra)) as (with_journal, pid_on, _),
        gateway(gateway_config(upstream, journal=False, extra=extra)) as (without, pid_off, _),
    ):
        on_url, off_url = f"{with_journal}/v1/chat/completions", f"{without}/v1/chat/completions"
        on, off = [], []
        async with aiohttp.ClientSession() as session:
            await latencies(session, on_url, BODY, 200)
            await latencies(session, off_url, BODY, 200)
            for _ in range(8):
                on += await latencies(session, on_url, BODY, requests // 8)
                off += await latencies(session, off_url, BODY, requests // 8)
        cpu_on0 = cpu_seconds(pid_on)
        count_on, elapsed_on = await throughput(on_url, BODY, 3.0, REPORTED_CONCURRENCY)
        cpu_on = cpu_seconds(pid_on) - cpu_on0
        cpu_off0 = cpu_seconds(pid_off)
        count_off, elapsed_off = await throughput(off_url, BODY, 3.0, REPORTED_CONCURRENCY)
        cpu_off = cpu_seconds(pid_off) - cpu_off0
    c = REPORTED_CONCURRENCY
    added = (percentile(on, 50) - percentile(off, 50), percentile(on, 99) - percentile(off, 99))
    rows = [
        (f"{label} on / off c=1 p50 (ms)", f"{percentile(on, 50):.3f} / {percentile(off, 50):.3f}"),
        (f"{label} added c=1 p50 / p99 (ms)", f"{added[0]:.3f} / {added[1]:.3f}"),
        (f"{label} on / off c={c} (req/s)", f"{count_on / elapsed_on:.0f} / {count_off / elapsed_off:.0f}"),
        (f"{label} CPU per request on / off (ms)", f"{cpu_on * 1e3 / count_on:.3f} / {cpu_off * 1e3 / count_off:.3f}"),
    ]
    for name, value in rows:
        print(f"{name:60s} {value:>16s}")


@contextmanager
def otlp_sink(core: int | None = 1) -> Iterator[str]:
    """bench/otlp_sink.py: a loopback OTLP/HTTP collector that counts the spans it decodes."""
    port = free_port()
    script = os.path.join(os.path.dirname(__file__), "otlp_sink.py")
    with process([sys.executable, script, "--port", str(port)], f"http://127.0.0.1:{port}/stats", core=core):
        yield f"http://127.0.0.1:{port}"


def seam_off_us(stages: int = 6, n: int = 200_000) -> float:
    """What tracing off costs a request in-process (us): `stages` calls through `@stage` for an
    untraced context, against the same calls undecorated."""
    from margin.pipeline.context import RequestContext
    from margin.pipeline.trace import stage

    def bare(self: object, ctx: RequestContext) -> int:
        return 1

    decorated = stage("bench")(bare)
    ctx = RequestContext(request_id="bench", endpoint="chat")
    timings = []
    for method in (bare, decorated, bare, decorated):
        started = time.perf_counter()
        for _ in range(n):
            method(None, ctx)
        timings.append(time.perf_counter() - started)
    per_call = (min(timings[1], timings[3]) - min(timings[0], timings[2])) / n
    return per_call * stages * 1e6


async def tracing_cost(requests: int) -> None:
    """Tracing off vs on at 100% sampling, exporting to a loopback collector: two gateways on the
    same core, requests interleaved at c=1, then CPU per request at c=16."""
    with (
        fake_upstream(1) as upstream,
        otlp_sink(1) as sink,
        gateway(gateway_config(upstream)) as (off_base, pid_off, _),
        gateway(gateway_config(upstream, extra=TRACING.format(sink=sink))) as (on_base, pid_on, _),
    ):
        on_url, off_url = f"{on_base}/v1/chat/completions", f"{off_base}/v1/chat/completions"
        on: list[float] = []
        off: list[float] = []
        added: list[float] = []  # each round's p50 difference: drift between rounds cancels out
        async with aiohttp.ClientSession() as session:
            await latencies(session, on_url, BODY, 200)
            await latencies(session, off_url, BODY, 200)
            cpu_c1 = {pid_on: cpu_seconds(pid_on), pid_off: cpu_seconds(pid_off)}
            for round_ in range(ROUNDS):  # interleaved, each side first in turn
                urls = (on_url, off_url) if round_ % 2 == 0 else (off_url, on_url)
                got = {url: await latencies(session, url, BODY, requests // ROUNDS) for url in urls}
                on += got[on_url]
                off += got[off_url]
                added.append(percentile(got[on_url], 50) - percentile(got[off_url], 50))
        cpu_c1 = {pid: (cpu_seconds(pid) - before) * 1e3 / len(on) for pid, before in cpu_c1.items()}
        cpu0 = cpu_seconds(pid_on)
        count_on, _ = await throughput(on_url, BODY, 3.0, REPORTED_CONCURRENCY)
        cpu_on = cpu_seconds(pid_on) - cpu0
        cpu0 = cpu_seconds(pid_off)
        count_off, _ = await throughput(off_url, BODY, 3.0, REPORTED_CONCURRENCY)
        cpu_off = cpu_seconds(pid_off) - cpu0
        c16 = f"{cpu_on * 1e3 / count_on:.3f} / {cpu_off * 1e3 / count_off:.3f}"
        traced = 200 + len(on) + count_on  # warm-up, c=1 and c=16 requests through the traced gateway
        spans = await received_spans(sink, expected=traced * TRACED_SPANS)
    rows = [
        ("tracing on / off c=1 p50 (ms)", f"{percentile(on, 50):.3f} / {percentile(off, 50):.3f}"),
        ("tracing on added c=1 p50 (ms)  [target <= 0.15]", f"{percentile(on, 50) - percentile(off, 50):.3f}"),
        (f"tracing on added c=1 p50, median of {ROUNDS} rounds (ms)", f"{statistics.median(added):.3f}"),
        ("tracing on added c=1 p99 (ms)", f"{percentile(on, 99) - percentile(off, 99):.3f}"),
        ("tracing CPU per request c=1 on / off (ms)", f"{cpu_c1[pid_on]:.3f} / {cpu_c1[pid_off]:.3f}"),
        ("tracing CPU per request c=16 on / off (ms)", c16),
        ("spans received / requests traced", f"{spans} / {traced}"),
        ("tracing off: seam per request, in-process (us)", f"{seam_off_us():.3f}"),
    ]
    for name, value in rows:
        print(f"{name:60s} {value:>16s}")


async def received_spans(sink: str, expected: int, wait_s: float = 10.0) -> int:
    """The collector's span count once `expected` arrived (or after `wait_s`)."""
    deadline = time.perf_counter() + wait_s
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{sink}/stats") as response:
                spans = int((await response.json())["spans"])
            if spans >= expected or time.perf_counter() > deadline:
                return spans
            await asyncio.sleep(0.1)


async def journal_only(requests: int) -> None:
    await journal_cost(requests)
    with redis_server() as redis:
        if redis is None:
            print("redis-server not installed: the journal with Redis intents is not measured")
            return
        budget = f'redis: {{url: "{redis}"}}\nbudgets:\n  - {{scope: global, limit_usd: 1000000, window: month}}\n'
        await journal_cost(requests, budget, "journal+intents (redis budget)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=None, help="c=1 requests (default 1000; 2000 with --detail)")
    parser.add_argument("--seconds", type=float, default=None, help="each loaded phase (default 5; 10 with --detail)")
    parser.add_argument("--concurrency", type=int, default=32, help="--detail's throughput clients")
    parser.add_argument("--detail", action="store_true", help="the earlier default: header vs measured, per chunk")
    parser.add_argument("--baseline-src", default=None, help="also measure margin from this source tree (its src/)")
    parser.add_argument("--journal-only", action="store_true", help="only the journal on/off comparison")
    parser.add_argument("--tracing-only", action="store_true", help="only the OpenTelemetry on/off comparison")
    args = parser.parse_args()
    detailed = args.detail or args.tracing_only or args.journal_only
    requests = args.requests or (2000 if detailed else 1000)
    seconds = args.seconds or (10.0 if detailed else 5.0)
    if os.environ.get("MARGIN_BENCH_PINNED") is None and (os.cpu_count() or 1) >= 2 and not detailed:
        os.sched_setaffinity(0, {1})  # this load generator beside the fake upstream, off the proxies' core
    if args.tracing_only:
        asyncio.run(tracing_cost(requests))
    elif args.journal_only:
        asyncio.run(journal_only(requests))
    elif args.detail:
        asyncio.run(main(requests, seconds, args.concurrency))
    else:
        asyncio.run(bare_compare.run(requests, seconds, args.baseline_src))
