"""The measurements of bench/local_tier.py, each against a running server's base URL."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from stream_load import Level, Stream, chat_body, one, percentile, run_level, story, stream_once

PARAGRAPH = (
    "The harbour office keeps a ledger of every ship that enters and leaves the bay, with the name of "
    "its captain, the cargo it carries, the weight of that cargo in tonnes, the hour of arrival, the "
    "berth it was given and the fee it paid. Entry {n} of the ledger is written in a careful hand. "
)


async def warm(url: str, model: str) -> None:
    """One short request, so that model loading and first-call costs stay out of the figures."""
    await one(url, chat_body(model, story(0), 8))


async def load(url: str, model: str, concurrency: int, tokens: int) -> Level:
    return await run_level(url, model, concurrency, tokens)


# --- curve -------------------------------------------------------------------------------------------


def curve(urls: dict[str, str], model: str, levels: list[int], tokens: int, rounds: int) -> dict[str, dict[int, Any]]:
    """For each level and server, `rounds` runs; keeps the run with the median tokens/s and every TTFT.
    Each run's prompts are new (a fresh tag), so neither server's prompt cache answers them."""
    table: dict[str, dict[int, Any]] = {name: {} for name in urls}
    for concurrency in levels:
        runs: dict[str, list[Level]] = {name: [] for name in urls}
        for r in range(rounds):
            tag = f"{concurrency}-{r}-{uuid.uuid4().hex[:6]}"  # the same fresh prompts for both servers
            for name, url in urls.items():  # interleaved: drift in the machine's load hits both alike
                runs[name].append(asyncio.run(run_level(url, model, concurrency, tokens, offset=r, tag=tag)))
        for name, levels_run in runs.items():
            ordered = sorted(levels_run, key=lambda lv: lv.tokens_per_s)
            streams = [s for lv in levels_run for s in lv.streams]
            table[name][concurrency] = {
                "tps": ordered[len(ordered) // 2].tokens_per_s,
                "ttft": [s.ttft for s in streams],
                "gaps": [g for s in streams for g in s.gaps()],
                "tokens": statistics.mean(s.tokens for s in streams),
                "errors": [e for lv in levels_run for e in lv.errors],
            }
    return table


def print_curve(table: dict[str, dict[int, Any]], levels: list[int]) -> None:
    m, a = table["margin"], table["llama-server"]
    print(
        f"{'streams':>7} | {'margin tok/s':>12} {'llama-server':>12} {'ratio':>6} | "
        f"{'TTFT p50/p95 ms margin':>22} {'llama-server':>14} | {'ITL p95 ms m / l':>16} | tokens/stream m / l"
    )
    for n in levels:
        ttft_m = f"{percentile(m[n]['ttft'], 50) * 1e3:.0f}/{percentile(m[n]['ttft'], 95) * 1e3:.0f}"
        ttft_a = f"{percentile(a[n]['ttft'], 50) * 1e3:.0f}/{percentile(a[n]['ttft'], 95) * 1e3:.0f}"
        itl = f"{percentile(m[n]['gaps'], 95) * 1e3:.1f} / {percentile(a[n]['gaps'], 95) * 1e3:.1f}"
        print(
            f"{n:>7} | {m[n]['tps']:>12.1f} {a[n]['tps']:>12.1f} {m[n]['tps'] / a[n]['tps']:>6.2f} | "
            f"{ttft_m:>22} {ttft_a:>14} | {itl:>16} | {m[n]['tokens']:.0f} / {a[n]['tokens']:.0f}"
        )
    for name, rows in table.items():
        for n in levels:
            if rows[n]["errors"]:
                print(f"  {name} at {n}: {len(rows[n]['errors'])} errors, first: {rows[n]['errors'][0]}")
    top = 8 if 8 in levels else max(levels)
    print(f"margin({top})/margin(1) tokens/s        [target >= 3]    {m[top]['tps'] / m[1]['tps']:.2f}")
    print(f"llama-server({top})/llama-server(1)                       {a[top]['tps'] / a[1]['tps']:.2f}")
    print(f"margin({top})/llama-server({top}) tokens/s  [target >= 0.8]  {m[top]['tps'] / a[top]['tps']:.2f}")
    for name, rows in (("margin", m), ("llama-server", a)):
        ratio = percentile(rows[top]["ttft"], 95) / percentile(rows[1]["ttft"], 95)
        print(f"{name} TTFT p95 {top} streams / 1 stream  [target <= 2]  {ratio:.2f}")


def engine_time(url: str, token: str) -> dict[str, float]:
    """The batched engine's counters from margin's /metrics (empty with the slot engine)."""
    text = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {token}"}, timeout=10).text
    wanted = ("engine_steps", "engine_step_seconds", "engine_decode_seconds", "generated_tokens")
    found = {}
    for line in text.splitlines():
        for name in wanted:
            if line.startswith(f"margin_local_{name}_total{{"):
                found[name] = float(line.rsplit(" ", 1)[1])
    return found


def print_engine_time(found: dict[str, float]) -> None:
    if not found.get("engine_step_seconds"):
        print("margin engine: no batched-engine counters (slot engine)")
        return
    step, decode = found["engine_step_seconds"], found["engine_decode_seconds"]
    print(
        f"margin engine over the run: {found['engine_steps']:.0f} steps, {found['generated_tokens']:.0f} tokens; "
        f"llama_decode {decode:.1f} s of {step:.1f} s in steps -> loop + sampling {100 * (1 - decode / step):.1f}%"
        f" ({(step - decode) / found['engine_steps'] * 1e3:.2f} ms/step)"
    )


# --- chunked prefill ---------------------------------------------------------------------------------


def long_prompt(tokens: int) -> str:
    """About `tokens` tokens of text, unique to this run (so no cached prefix answers it)."""
    from llama_cpp import Llama

    from margin.config.local_weights import default_model_path

    vocab = Llama(model_path=str(default_model_path()), vocab_only=True, verbose=False)
    text, n = f"Run {uuid.uuid4().hex}. ", 0
    while len(vocab.tokenize(text.encode())) < tokens:
        text += PARAGRAPH.format(n=n)
        n += 1
    return text + "\nHow many entries does the ledger have?"


async def prefill(url: str, model: str, tokens: int) -> dict[str, Any]:
    """7 streams alone, then 7 streams with a ~2,000-token prompt arriving once each has 16 tokens."""
    alone = await run_level(url, model, 7, tokens)
    body = chat_body(model, [{"role": "user", "content": long_prompt(2000)}], 4)
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        streams = [Stream(started=0.0) for _ in range(7)]
        tasks = [
            asyncio.create_task(stream_once(client, chat_body(model, story(i), tokens), s))
            for i, s in enumerate(streams)
        ]
        while not all(t.done() for t in tasks) and min(len(s.arrivals) for s in streams) < 16:
            await asyncio.sleep(0.005)
        big = await stream_once(client, body)
        await asyncio.gather(*tasks)
    window = (big.started, big.first or big.ended)
    during = [g for s in streams for g in s.gaps(*window)]
    still = sum(1 for s in streams if s.arrivals and s.arrivals[-1] > window[1])
    return {
        "alone_p95": percentile([g for s in alone.streams for g in s.gaps()], 95),
        "during_p95": percentile(during, 95),
        "during_max": max(during, default=float("nan")),
        "during_n": len(during),
        "loaded_p95": percentile([g for s in streams for g in s.gaps()], 95),
        "long_ttft": big.ttft,
        "still_decoding": still,
        "errors": [s.error for s in [*streams, big] if s.error],
    }


def print_prefill(name: str, r: dict[str, Any]) -> None:
    ratio = r["during_p95"] / r["alone_p95"]
    print(
        f"{name}: inter-token p95 alone {r['alone_p95'] * 1e3:.1f} ms; while the long prompt prefills "
        f"{r['during_p95'] * 1e3:.1f} ms (max {r['during_max'] * 1e3:.0f} ms, {r['during_n']} gaps, "
        f"{r['still_decoding']}/7 streams decoding after it) -> {ratio:.2f}x  [target <= 2]; "
        f"whole loaded run p95 {r['loaded_p95'] * 1e3:.1f} ms; long prompt TTFT {r['long_ttft'] * 1e3:.0f} ms"
    )
    for error in r["errors"][:2]:
        print(f"  error: {error}")


# --- prefix reuse ------------------------------------------------------------------------------------


async def prefix(url: str, model: str, rounds: int) -> list[tuple[float, float]]:
    """(TTFT of the 1st, TTFT of the 2nd) request sharing a fresh ~1,000-token system prompt, per round."""
    out = []
    for _ in range(rounds):
        system = long_prompt(1000)
        first = await one(url, chat_body(model, _asking(system, "Who keeps the ledger?"), 4))
        second = await one(url, chat_body(model, _asking(system, "What does entry 3 say?"), 4))
        out.append((first.ttft, second.ttft))
    return out


def _asking(system: str, question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def print_prefix(name: str, rounds: list[tuple[float, float]]) -> None:
    first = statistics.median(r[0] for r in rounds)
    second = statistics.median(r[1] for r in rounds)
    print(
        f"{name}: TTFT 1st {first * 1e3:.0f} ms, 2nd {second * 1e3:.0f} ms -> {first / second:.1f}x lower "
        f"[target >= 5] (median of {len(rounds)} fresh system prompts)"
    )


# --- memory ------------------------------------------------------------------------------------------


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB of `pid` and its children."""
    rss = hwm = 0.0
    for p in [pid, *_children(pid)]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1]) / 1024
    return rss, hwm


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return [c for c in found for c in (c, *_children(c))]


def print_rss(name: str, readings: dict[int, tuple[float, float]]) -> None:
    (rss1, hwm1), (rss8, hwm8) = readings[1], readings[8]
    print(
        f"{name}: VmRSS 1 seq {rss1:.0f} MB, 8 seq {rss8:.0f} MB -> {rss8 / rss1:.2f}x  [target <= 1.3]; "
        f"peak (VmHWM) {hwm1:.0f} / {hwm8:.0f} MB -> {hwm8 / hwm1:.2f}x"
    )


# --- single stream -----------------------------------------------------------------------------------


def direct(tokens: int, runs: int, threads: int) -> float:
    """Raw llama-cpp-python create_chat_completion, median tokens/s."""
    from llama_cpp import Llama

    from margin.config.local_weights import default_model_path

    model: Any = Llama(model_path=str(default_model_path()), n_ctx=2048, n_threads=threads, n_batch=256, verbose=False)
    rates: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        out = model.create_chat_completion(messages=story(0), max_tokens=tokens, temperature=0, stop=[], seed=1)
        rates.append(out["usage"]["completion_tokens"] / (time.perf_counter() - started))
    del model
    return sorted(rates)[len(rates) // 2]


def through_margin(url: str, model: str, tokens: int, runs: int) -> tuple[float, list[float]]:
    """One non-streamed request at a time through margin, median tokens/s; /healthz latency meanwhile."""
    body = {"model": model, "messages": story(0), "max_tokens": tokens, "temperature": 0, "seed": 1}
    rates: list[float] = []
    health: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=url) as c:
            while not done.is_set():
                started = time.perf_counter()
                c.get("/healthz")
                health.append((time.perf_counter() - started) * 1000)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    with httpx.Client(base_url=url, timeout=600) as client:
        client.post("/v1/chat/completions", json={**body, "max_tokens": 4}, headers={"cache-control": "no-store"})
        prober.start()
        for _ in range(runs):
            started = time.perf_counter()
            response = client.post("/v1/chat/completions", json=body, headers={"cache-control": "no-cache, no-store"})
            rates.append(response.json()["usage"]["completion_tokens"] / (time.perf_counter() - started))
    done.set()
    prober.join()
    return sorted(rates)[len(rates) // 2], health


def print_single(direct_tps: float, margin_tps: float, health: list[float]) -> None:
    print(f"{'direct llama-cpp-python (tokens/s)':45s} {direct_tps:10.1f}")
    print(f"{'through margin (tokens/s)':45s} {margin_tps:10.1f}")
    print(f"{'ratio margin/direct  [target >= 0.90]':45s} {margin_tps / direct_tps:10.3f}")
    print(
        f"{'/healthz while generating p50 / p99 (ms)':45s} {percentile(health, 50):6.1f} / {percentile(health, 99):.1f}"
    )
