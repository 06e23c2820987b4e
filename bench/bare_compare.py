"""margin against a bare ASGI pass-through proxy (bench/bare_proxy.py), in one run (issue 27).

Both proxies run one worker pinned to core 0, one at a time under load; the fake upstream and this
load generator share core 1. margin runs as deployed (metering, the ledger, the journal on), and a
second margin with Python's own collector settings (`server.runtime: {gc_freeze: false,
gc_thresholds: null}`) shows what the collector tuning changes. Targets are the issue's; "added"
is against calling the upstream directly, "margin - bare" against the floor.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import subprocess
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

import aiohttp
import orjson
from harness import bare_proxy, cpu_seconds, fake_upstream, gateway, gateway_config, metric_samples, percentile

CLIENTS = 64
HEADERS = {"content-type": "application/json"}
BODY = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "Say hello to the benchmark."}]})
STREAM = orjson.dumps(
    {"model": "bench", "stream": True, "messages": [{"role": "user", "content": "Stream sixteen pieces back"}]}
)
PYTHON_GC = "runtime: {gc_freeze: false, gc_thresholds: null}"


@dataclass
class Target:
    """One proxy (or the upstream itself) and what was measured through it."""

    name: str
    base: str
    pid: int | None = None
    c1: list[float] = field(default_factory=list)  # ms, non-streaming, one client
    c1_cpu_s: float = 0.0
    ttfb: list[float] = field(default_factory=list)  # ms, streaming, one client
    loaded: dict[bool, list[Load]] = field(default_factory=lambda: {False: [], True: []})  # by stream

    @property
    def url(self) -> str:
        return f"{self.base}/v1/chat/completions"

    def cpu(self) -> float:
        return cpu_seconds(self.pid) if self.pid is not None else 0.0


@dataclass
class Load:
    count: int
    elapsed: float
    latencies: list[float]
    cpu_s: float

    @staticmethod
    def merge(runs: list[Load]) -> Load:
        return Load(
            sum(r.count for r in runs),
            sum(r.elapsed for r in runs),
            [x for r in runs for x in r.latencies],
            sum(r.cpu_s for r in runs),
        )

    @property
    def rps(self) -> float:
        return self.count / self.elapsed if self.elapsed else math.nan

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s * 1000 / self.count if self.count else math.nan


async def one_client(session: aiohttp.ClientSession, url: str, body: bytes, n: int, first_byte: bool) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        async with session.post(url, data=body, headers=HEADERS) as response:
            if first_byte:
                await response.content.readany()
                out.append((time.perf_counter() - started) * 1000)
            await response.read()
            assert response.status == 200, response.status
        if not first_byte:
            out.append((time.perf_counter() - started) * 1000)
    return out


async def closed_loop(target: Target, body: bytes, seconds: float, clients: int = CLIENTS) -> Load:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(target.url, data=body, headers=HEADERS) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append((time.perf_counter() - started) * 1000)

        cpu0, started = target.cpu(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return Load(len(latencies), time.perf_counter() - started, latencies, target.cpu() - cpu0)


@dataclass
class Collector:
    """GC pauses and event-loop lag of one margin over the loaded phases, from its /metrics."""

    pauses: int = 0
    pauses_over_5ms: int = 0
    pause_bound_ms: float = 0.0  # the upper bound of the highest bucket a pause fell in
    lags_over_50ms: int = 0
    lag_max_ms: float = 0.0
    runs: list[tuple[dict[str, float], dict[str, float]]] = field(default_factory=list)

    def around(self, base: str) -> Snapshot:
        return Snapshot(self, base)

    def add(self, before: dict[str, float], after: dict[str, float]) -> None:
        delta = {k: after[k] - before.get(k, 0.0) for k in after}
        buckets: dict[float, float] = {}
        for key, value in delta.items():
            if key.startswith("margin_gc_pause_seconds_bucket"):
                bound = float(key.split('le="')[1].split('"')[0])
                buckets[bound] = buckets.get(bound, 0.0) + value
        self.pauses += int(buckets.get(math.inf, 0))
        self.pauses_over_5ms += int(buckets.get(math.inf, 0) - buckets.get(0.005, 0))
        reached = [b for b, n in buckets.items() if n and all(buckets[o] < n for o in buckets if o < b)]
        self.pause_bound_ms = max([self.pause_bound_ms, *(b * 1000 for b in reached)])
        lag_total = delta.get('margin_event_loop_lag_seconds_bucket{le="+Inf"}', 0)
        self.lags_over_50ms += int(lag_total - delta.get('margin_event_loop_lag_seconds_bucket{le="0.05"}', 0))
        self.lag_max_ms = max(self.lag_max_ms, after.get("margin_event_loop_lag_max_seconds", 0) * 1000)


class Snapshot:
    def __init__(self, collector: Collector, base: str) -> None:
        self.collector, self.base = collector, base

    def __enter__(self) -> None:
        self.before = runtime_samples(self.base)

    def __exit__(self, *exc: object) -> None:
        self.collector.add(self.before, runtime_samples(self.base))


def runtime_samples(base: str) -> dict[str, float]:
    out = {}
    for name in ("margin_gc_pause_seconds_bucket", "margin_event_loop_lag_seconds_bucket"):
        out.update({name + k: v for k, v in metric_samples(base, name).items()})
    out["margin_event_loop_lag_max_seconds"] = metric_samples(base, "margin_event_loop_lag_max_seconds").get("", 0)
    return out


Collectors = dict[tuple[str, bool], Collector]  # by (margin's name, streaming)


async def measure(targets: list[Target], requests: int, seconds: float, rounds: int = 2) -> Collectors:
    direct, proxies = targets[0], targets[1:]
    collectors = {(t.name, s): Collector() for t in proxies for s in (False, True) if t.name.startswith("margin")}
    async with aiohttp.ClientSession() as session:
        for t in targets:  # warm up: connection pools, first-use paths
            await one_client(session, t.url, BODY, 200, False)
            await one_client(session, t.url, STREAM, 50, True)
        for _ in range(4):  # interleaved so drift hits every side
            for t in targets:
                cpu0 = t.cpu()
                t.c1 += await one_client(session, t.url, BODY, requests // 4, False)
                t.c1_cpu_s += t.cpu() - cpu0
        for _ in range(2):
            for t in targets:
                t.ttfb += await one_client(session, t.url, STREAM, requests // 4, True)
    for t in proxies:
        await closed_loop(t, BODY, 1.0)  # steady state: pools at CLIENTS connections
    for _ in range(rounds):
        direct.loaded[False].append(await closed_loop(direct, BODY, seconds / 2))
        for stream in (False, True):
            for t in proxies:
                if stream and t.name == "margin, Python's GC":
                    continue
                key = (t.name, stream)
                with collectors[key].around(t.base) if key in collectors else ExitStack():
                    t.loaded[stream].append(await closed_loop(t, STREAM if stream else BODY, seconds))
    return collectors


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


async def run(requests: int, seconds: float, baseline_src: str | None = None) -> None:
    # The load generator's own collections would show as every proxy's (and the upstream's) outliers.
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    print(f"load before: {uptime()}", flush=True)
    started = time.perf_counter()
    with ExitStack() as stack:
        upstream = stack.enter_context(fake_upstream(1, "--chunks", "16"))
        bare, bare_pid = stack.enter_context(bare_proxy(upstream))
        margin, pid, _ = stack.enter_context(gateway(gateway_config(upstream)))
        margin_py, pid_py, _ = stack.enter_context(gateway(gateway_config(upstream, server=PYTHON_GC)))
        targets = [
            Target("direct", upstream),
            Target("bare", bare, bare_pid),
            Target("margin", margin, pid),
            Target("margin, Python's GC", margin_py, pid_py),
        ]
        if baseline_src:  # an earlier margin (its `src` folder), measured as margin is
            old, old_pid, _ = stack.enter_context(gateway(gateway_config(upstream), src=baseline_src))
            targets.append(Target("baseline", old, old_pid))
        collectors = await measure(targets, requests, seconds)
    print(f"load after:  {uptime()}  ({time.perf_counter() - started:.0f} s)")
    summary(targets[:4], collectors)
    if baseline_src:
        versus_baseline(targets[2], targets[4], baseline_src)


def summary(targets: list[Target], collectors: Collectors) -> None:
    direct, bare, margin, _ = targets
    loads = {t.name: {s: Load.merge(t.loaded[s]) for s in (False, True) if t.loaded[s]} for t in targets}
    d, b, m, mp = (loads[t.name] for t in targets)

    def p(values: list[float], q: float) -> float:
        return percentile(values, q)

    def added_p99(load: Load) -> float:
        return p(load.latencies, 99) - p(d[False].latencies, 99)

    rows = [
        ("req/s c=64 non-streaming", d[False].rps, b[False].rps, m[False].rps, m[False].rps / b[False].rps, ">= 0.6x"),
        ("req/s c=64 streaming", math.nan, b[True].rps, m[True].rps, m[True].rps / b[True].rps, ">= 0.5x"),
        ("CPU ms/request c=64 non-streaming", math.nan, b[False].cpu_ms, m[False].cpu_ms,
         m[False].cpu_ms / b[False].cpu_ms, ""),
        ("CPU ms/request c=64 streaming", math.nan, b[True].cpu_ms, m[True].cpu_ms,
         m[True].cpu_ms / b[True].cpu_ms, ""),
        ("CPU ms/request c=1 non-streaming", math.nan, bare.c1_cpu_s * 1e3 / len(bare.c1),
         margin.c1_cpu_s * 1e3 / len(margin.c1), margin.c1_cpu_s / bare.c1_cpu_s, ""),
        ("p50 c=1 non-streaming (ms)", p(direct.c1, 50), p(bare.c1, 50), p(margin.c1, 50), math.nan, ""),
        ("added p50 c=1 non-streaming (ms)", math.nan, p(bare.c1, 50) - p(direct.c1, 50),
         p(margin.c1, 50) - p(direct.c1, 50), math.nan, "margin-bare <= 0.3"),
        ("  margin - bare", math.nan, math.nan, p(margin.c1, 50) - p(bare.c1, 50), math.nan, "<= 0.3"),
        ("stream TTFB added c=1 p50 (ms)", math.nan, p(bare.ttfb, 50) - p(direct.ttfb, 50),
         p(margin.ttfb, 50) - p(direct.ttfb, 50), math.nan, ""),
        ("  margin - bare", math.nan, math.nan, p(margin.ttfb, 50) - p(bare.ttfb, 50), math.nan, "<= 0.3"),
        ("p99 c=64 non-streaming (ms)", p(d[False].latencies, 99), p(b[False].latencies, 99),
         p(m[False].latencies, 99), math.nan, ""),
        ("added p99 c=64 non-streaming (ms)", math.nan, added_p99(b[False]), added_p99(m[False]),
         added_p99(m[False]) / added_p99(b[False]), "<= 3x"),
        ("max latency c=64 non-streaming (ms)", max(d[False].latencies), max(b[False].latencies),
         max(m[False].latencies), math.nan, ""),
    ]  # fmt: skip
    print(f"\n{'metric':38s} {'direct':>9s} {'bare':>9s} {'margin':>9s} {'margin/bare':>12s}  target")
    for name, *values, target in rows:
        cells = " ".join(f"{v:9.3f}" if abs(v) < 100 else f"{v:9.0f}" for v in values[:3])
        ratio = values[3]
        print(f"{name:38s} {cells.replace('nan', '  -')} {ratio:12.2f}  {target}".replace(" nan", "   -"))
    print(f"\nc=64 non-streaming, steady state: {'margin':>10s} {'Python GC':>10s}")
    tuned, py = collectors["margin", False], collectors["margin, Python's GC", False]
    gc_rows = [
        ("req/s", m[False].rps, mp[False].rps),
        ("CPU ms/request", m[False].cpu_ms, mp[False].cpu_ms),
        ("p99 (ms)", p(m[False].latencies, 99), p(mp[False].latencies, 99)),
        ("collections", tuned.pauses, py.pauses),
        ("collection pauses > 5 ms", tuned.pauses_over_5ms, py.pauses_over_5ms),
        ("longest pause, bucket bound (ms)", tuned.pause_bound_ms, py.pause_bound_ms),
        ("loop lags > 50 ms", tuned.lags_over_50ms, py.lags_over_50ms),
        ("loop lag max, last window (ms)", tuned.lag_max_ms, py.lag_max_ms),
    ]
    for name, a, c in gc_rows:
        print(f"  {name:32s} {a:10.3f} {c:10.3f}" if isinstance(a, float) else f"  {name:32s} {a:10d} {c:10d}")
    streamed = collectors["margin", True]
    print(
        f"c=64 streaming, margin: {streamed.pauses} collections, {streamed.pauses_over_5ms} over 5 ms, "
        f"{streamed.lags_over_50ms} loop lags over 50 ms (cores: {os.cpu_count()})"
    )


def versus_baseline(margin: Target, old: Target, src: str) -> None:
    """This margin against the one from `src`, in the same run."""
    print(f"\nmargin now vs baseline ({src}):    {'now':>9s} {'baseline':>9s} {'now/baseline':>12s}")
    now = {s: Load.merge(margin.loaded[s]) for s in (False, True)}
    then = {s: Load.merge(old.loaded[s]) for s in (False, True)}
    rows = [
        ("req/s c=64 non-streaming", now[False].rps, then[False].rps),
        ("req/s c=64 streaming", now[True].rps, then[True].rps),
        ("CPU ms/request c=64 non-streaming", now[False].cpu_ms, then[False].cpu_ms),
        ("CPU ms/request c=64 streaming", now[True].cpu_ms, then[True].cpu_ms),
        ("CPU ms/request c=1 non-streaming", margin.c1_cpu_s * 1e3 / len(margin.c1), old.c1_cpu_s * 1e3 / len(old.c1)),
        ("p50 c=1 non-streaming (ms)", percentile(margin.c1, 50), percentile(old.c1, 50)),
        ("stream TTFB c=1 p50 (ms)", percentile(margin.ttfb, 50), percentile(old.ttfb, 50)),
        ("p99 c=64 non-streaming (ms)", percentile(now[False].latencies, 99), percentile(then[False].latencies, 99)),
        ("max latency c=64 non-streaming (ms)", max(now[False].latencies), max(then[False].latencies)),
    ]
    for name, a, b in rows:
        print(f"  {name:36s} {a:9.3f} {b:9.3f} {a / b:12.2f}")
