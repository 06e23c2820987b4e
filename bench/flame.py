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
import html
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

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


def tree(collapsed: Path) -> tuple[dict[str, Any], int]:
    """Collapsed stacks as nested {frame: [samples, children]}, and the total."""
    root: dict[str, Any] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        level = root
        for frame in stack.split(";"):
            node = level.setdefault(frame, [0, {}])
            node[0] += int(count)
            level = node[1]
    return root, total


def render_svg(collapsed: Path, out: Path, title: str, min_share: float = 0.01) -> None:
    """A small flame graph: frames under `min_share` of the samples are left out (py-spy's own SVG
    keeps every frame and weighs 150-200 KB for a few seconds of samples)."""
    root, total = tree(collapsed)
    width, row = 1200.0, 16
    rects: list[str] = []

    def draw(level: dict[str, Any], x: float, depth: int) -> int:
        deepest = depth
        for frame, (samples, children) in sorted(level.items()):
            w = samples / total * width
            if samples / total >= min_share:
                label = html.escape(frame if len(frame) * 6.5 < w else frame[: max(int(w / 6.5) - 2, 0)] + "..")
                hue = 20 + (hash(frame.split(" ")[-1]) % 40)
                rects.append(
                    f"<g><title>{html.escape(frame)} ({samples / total:.1%})</title>"
                    f'<rect x="{x:.1f}" y="{{y{depth}}}" width="{w:.1f}" height="{row - 1}" fill="hsl({hue},85%,60%)"/>'
                    f'<text x="{x + 2:.1f}" y="{{t{depth}}}">{label if w > 20 else ""}</text></g>'
                )
                deepest = max(deepest, draw(children, x, depth + 1))
            x += w
        return deepest

    depth = draw(root, 0.0, 0) + 1
    height = depth * row + 30
    body = "\n".join(rects)
    for d in range(depth):  # the root at the bottom, as flame graphs are drawn
        body = body.replace(f"{{y{d}}}", f"{height - (d + 1) * row:.0f}").replace(
            f"{{t{d}}}", f"{height - d * row - 4:.0f}"
        )
    out.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}" font-family="monospace" '
        f'font-size="11"><text x="4" y="16" font-size="14">{html.escape(title)} ({total} samples)</text>\n'
        f"{body}\n</svg>\n"
    )


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
        common = [spy, "record", "--pid", str(pid), "--duration", str(args.seconds), "--rate", "250", "--nonblocking"]
        raw = out.with_suffix(".txt")
        collapsed = subprocess.Popen([*common, "--nolineno", "--format", "raw", "--output", str(raw)])
        load = await closed_loop(target, body, args.seconds + 1, args.clients)
        collapsed.wait()
    kind = "streaming" if args.stream else "non-streaming"
    render_svg(raw, out, f"margin {args.label}, {kind}, {args.clients} clients, {load.cpu_ms:.3f} CPU ms/request")
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
    parser.add_argument("--label", default="", help="named in the graph's title, e.g. before / after")
    parser.add_argument("--render", default=None, help="only draw --out from this collapsed-stacks file")
    parser.add_argument("--src", default=None, help="profile margin from this source tree (its src/), e.g. a baseline")
    args = parser.parse_args()
    if args.render:
        render_svg(Path(args.render), Path(args.out), args.label)
        sys.exit(0)
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    asyncio.run(record(args))
