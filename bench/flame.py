"""Flame graphs of margin's request path under load (issue 27; docs/performance.md).

Starts the fake upstream and `margin serve` (core 0, metering and the ledger on, as bench/overhead.py
does), drives `--clients` closed-loop clients through it, and records the gateway with py-spy for
`--seconds`: an SVG flame graph and the collapsed stacks (for `--top`, the functions that cost the
most, inclusive). py-spy is not a margin dependency: install it into a tool venv of its own, e.g.
`python3 -m venv /tmp/pyspy && /tmp/pyspy/bin/pip install py-spy`.

    python bench/flame.py --clients 64 --out docs/img/flame-c64.svg [--stream] [--py-spy PATH] [--src OLD/src]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from bare_compare import BODY, STREAM, Target, closed_loop
from harness import fake_upstream, gateway, gateway_config


def top(collapsed: Path, n: int) -> list[tuple[str, float]]:
    """The `n` frames in the most samples (inclusive), as shares of all samples."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        for frame in set(stack.split(";")):
            inclusive[frame] += samples
    return [(frame, samples / max(total, 1)) for frame, samples in inclusive.most_common(n)]


async def record(args: argparse.Namespace) -> None:
    spy = args.py_spy or shutil.which("py-spy") or "/tmp/pyspy/bin/py-spy"
    out = Path(args.out)
    with (
        fake_upstream(1, "--chunks", "16") as upstream,
        gateway(gateway_config(upstream), src=args.src) as (
            base,
            pid,
            _,
        ),
    ):
        target = Target("margin", base, pid)
        body = STREAM if args.stream else BODY
        await closed_loop(target, body, 2.0, args.clients)  # warm-up
        common = [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(args.seconds),
            "--rate",
            "250",
            "--nonblocking",
            "--nolineno",
        ]
        svg = subprocess.Popen([*common, "--format", "flamegraph", "--output", str(out)])
        load = await closed_loop(target, body, args.seconds + 1, args.clients)
        svg.wait()
        raw = out.with_suffix(".txt")
        collapsed = subprocess.Popen([*common, "--format", "raw", "--output", str(raw)])
        await closed_loop(target, body, args.seconds + 1, args.clients)
        collapsed.wait()
    print(f"{load.rps:.0f} req/s, {load.cpu_ms:.3f} CPU ms/request at {args.clients} clients; {out}, {raw}")
    for frame, share in top(raw, args.top):
        print(f"{share:6.1%}  {frame}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--out", default="flame.svg")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--py-spy", default=None)
    parser.add_argument("--src", default=None, help="profile margin from this source tree (its src/), e.g. a baseline")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    asyncio.run(record(args))
