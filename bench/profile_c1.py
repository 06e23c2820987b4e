"""Where one client's non-streaming request spends the gateway's CPU, function by function (issue 27;
docs/performance.md, "Third pass: non-streaming and one client").

py-spy (bench/flame.py) samples; this counts. It starts the fake upstream and `margin serve` (core 0,
metering and the ledger on, as bench/overhead.py does) with cProfile on the event loop's thread,
drives `--requests` sequential non-streaming requests through it, has the gateway dump its profile
(SIGUSR1) and prints the request path's stages in microseconds per request, cumulative, as cProfile
measured them (its own cost included: compare stages with each other, not with a bench's
milliseconds). `--src`: profile margin from that source tree (its src/), e.g. a baseline.

    python bench/profile_c1.py [--requests 1200] [--out c1.prof] [--src OLD/src] [--top 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import runpy
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
import aiohttp
from bare_compare import BODY, HEADERS, Target
from harness import fake_upstream, free_port, gateway_config, process

# (label, cProfile's "file:line(function)" suffix) of the stages worth reading, outermost first.
STAGES = [
    ("whole app (Starlette, middleware, endpoint)", "starlette/applications.py", "__call__"),
    ("endpoint: _sampling", "margin/api/openai.py", "_sampling"),
    ("  auth + read + parse + validate the body", "margin/api/openai.py", "read_valid_body"),
    ("  new_context", "margin/api/openai.py", "new_context"),
    ("  Pipeline.chat", "margin/pipeline/handler.py", "chat"),
    ("    admit (route, limits, cache lookup)", "margin/pipeline/handler.py", "_admit"),
    ("    lifecycle end (meter, price, settle)", "margin/pipeline/lifecycle.py", "end"),
    ("    Caller.failover", "margin/pipeline/call.py", "failover"),
    ("      journal `att` line", "margin/pipeline/durable.py", "attempt_started"),
    ("      provider chat", "margin/providers/openai_compat.py", "chat"),
    ("        aiohttp request", "aiohttp/client.py", "_request"),
    ("        usage", "margin/metering/usage.py", "openai_usage"),
    ("Response send (start + body)", "starlette/responses.py", "__call__"),
    ("recorder task", "margin/pipeline/record.py", "_run"),
    ("  ledger sink (rows, journal, writer)", "margin/app.py", "sink"),
    ("  metrics", "margin/pipeline/record.py", "_observe"),
    ("uvicorn data_received", "uvicorn/protocols/http/httptools_impl.py", "data_received"),
    ("aiohttp data_received", "aiohttp/client_proto.py", "data_received"),
]


def serve_profiled(out: str, argv: list[str]) -> None:
    """`margin serve` under cProfile (the event loop's thread); SIGUSR1 writes the profile to `out`."""
    import cProfile

    profile = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: profile.dump_stats(out))
    sys.argv = ["margin", *argv]
    profile.enable()
    runpy.run_module("margin", run_name="__main__")


def stages(prof: Path, requests: int) -> list[tuple[str, float]]:
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    found: list[tuple[str, float]] = []
    for label, path, name in STAGES:
        cum = sum(v[3] for (file, _, func), v in stats.items() if file.endswith(path) and func == name)
        found.append((label, cum / requests * 1e6))
    return found


async def drive(base: str, pid: int, requests: int) -> float:
    target = Target("margin", base, pid)
    async with aiohttp.ClientSession() as session:
        cpu0 = target.cpu()
        for _ in range(requests):
            async with session.post(target.url, data=BODY, headers=HEADERS) as response:
                await response.read()
                assert response.status == 200, response.status
        return (target.cpu() - cpu0) / requests


def main(args: argparse.Namespace) -> None:
    out = Path(args.out).resolve()
    with fake_upstream(1, "--chunks", "16") as upstream, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "margin.yaml"
        config.write_text(gateway_config(upstream))
        port = free_port()
        argv = ["serve", "--config", str(config), "--port", str(port), "--log-level", "warning"]
        command = [sys.executable, __file__, "--serve-profiled", str(out), *argv]
        env = {"MARGIN_DATA_DIR": tmp, **({"PYTHONPATH": args.src} if args.src else {})}
        with process(command, f"http://127.0.0.1:{port}/healthz", core=0, env=env) as (proc, _):
            base = f"http://127.0.0.1:{port}"
            out.unlink(missing_ok=True)
            asyncio.run(drive(base, proc.pid, 50))  # warm-up: in the profile, not in the CPU figure
            cpu_s = asyncio.run(drive(base, proc.pid, args.requests))
            proc.send_signal(signal.SIGUSR1)
            for _ in range(50):
                time.sleep(0.2)
                if out.exists():
                    break
    warm, total = out, args.requests + 50  # the profile holds the warm-up's 50 requests too
    print(f"{args.requests} sequential requests, {cpu_s * 1000:.3f} CPU ms/request under cProfile; {warm}")
    for label, us in stages(warm, total):
        print(f"{us:9.1f} us  {label}")
    if args.top:
        pstats.Stats(str(warm)).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve-profiled":
        serve_profiled(sys.argv[2], sys.argv[3:])
        sys.exit(0)
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--out", default="c1.prof")
    parser.add_argument("--src", default=None, help="profile margin from this source tree (its src/)")
    parser.add_argument("--top", type=int, default=0, help="also print the N functions with the most own time")
    args = parser.parse_args()
    main(args)
