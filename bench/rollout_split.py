"""What a live rollout adds to the request path, measured in one run:
1. the route stage alone (`Router.decide`) for a group with a canary rollout vs the same group
   without one, interleaved, p50 and p99 in microseconds;
2. whole non-streamed requests through the gateway in process (fake provider, no network), with the
   rollout vs without, interleaved in batches, p50 in milliseconds;
3. shadow traffic: a group whose every request is mirrored vs a group without a rollout;
4. streamed requests of 16 and 128 content chunks under a canary rollout whose online grader sees
   every answer (each stream's answer collected and handed off at its end) vs groups without one:
   p50 per stream and the cost of each further chunk (the 128-chunk minus the 16-chunk p50, over
   112 chunks), with and without; and the same for two groups without a rollout (the run's noise).

With `--clock cpu` each request is timed in CPU time of the event loop's thread (time.thread_time)
instead of wall-clock time: on a loaded machine other processes then do not inflate the figures
(the work the gateway does in other threads, e.g. the ledger writes, is not counted either way).

    python bench/rollout_split.py [--decisions 50000] [--requests 2000] [--streams 2000] [--clock cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable

import httpx

from margin.app import create_app
from margin.config import parse_config
from margin.pipeline.context import RequestContext
from margin.pipeline.rollout_stage import RolloutStage
from margin.storage.memory import MemoryKeyStore
from margin.types import ChatRequest

CONFIG = """
data_dir: {data}
cache: {{enabled: false}}
metering: {{journal: false}}
deployments:
  - {{name: big, provider: fake, model: big, price: {{input: "1", output: "2"}}}}
  - {{name: small, provider: fake, model: small, price: {{input: "0.1", output: "0.2"}}}}
  - {{name: big2, provider: fake, model: big, price: {{input: "1", output: "2"}}}}
  - {{name: big3, provider: fake, model: big, price: {{input: "1", output: "2"}}}}
  - {{name: small3, provider: fake, model: small, price: {{input: "0.1", output: "0.2"}}}}
  - {{name: r16, provider: fake, model: big, price: {{input: "1", output: "2"}}, fake: {{chunks: 16}}}}
  - {{name: r128, provider: fake, model: big, price: {{input: "1", output: "2"}}, fake: {{chunks: 128}}}}
  - {{name: c16, provider: fake, model: small, price: {{input: "1", output: "2"}}, fake: {{chunks: 16}}}}
  - {{name: c128, provider: fake, model: small, price: {{input: "1", output: "2"}}, fake: {{chunks: 128}}}}
  - {{name: p16, provider: fake, model: big, price: {{input: "1", output: "2"}}, fake: {{chunks: 16}}}}
  - {{name: p128, provider: fake, model: big, price: {{input: "1", output: "2"}}, fake: {{chunks: 128}}}}
  - {{name: q16, provider: fake, model: big, price: {{input: "1", output: "2"}}, fake: {{chunks: 16}}}}
  - {{name: q128, provider: fake, model: big, price: {{input: "1", output: "2"}}, fake: {{chunks: 128}}}}
models:
  - {{name: chat, deployments: [big], rollout: {{steps: [{{share: 0.25}}]}}}}
  - {{name: plain, deployments: [big2]}}
  - {{name: mirrored, deployments: [big3], rollout: {{shadow: {{share: 1.0, budget_usd: "1000"}}}}}}
  - {{name: graded16, deployments: [r16], rollout: {{steps: [{{share: 0.25}}], online_grader: {GRADER}}}}}
  - {{name: graded128, deployments: [r128], rollout: {{steps: [{{share: 0.25}}], online_grader: {GRADER}}}}}
  - {{name: plain16, deployments: [p16]}}
  - {{name: plain128, deployments: [p128]}}
  - {{name: same16, deployments: [q16]}}
  - {{name: same128, deployments: [q128]}}
rollouts: {{refresh_s: 300, decide_every_s: 300, flush_every_s: 60}}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def p99(values: list[float]) -> float:
    return percentile(values, 0.99)


def route_stage(stage: RolloutStage, router: object, n: int) -> tuple[list[float], list[float]]:
    timings: dict[str, list[float]] = {"chat": [], "plain": []}
    decide = router.decide  # type: ignore[attr-defined]
    for i in range(n):
        for group in ("chat", "plain"):
            ctx = RequestContext(request_id=f"req_{i}", endpoint="chat")
            ctx.route_hints["session"] = f"s{i}"
            request = ChatRequest(model=group, messages=[{"role": "user", "content": "hi"}])
            started = time.perf_counter()
            decide(ctx, request)
            timings[group].append((time.perf_counter() - started) * 1e6)
    assert stage.engine.split.get("chat") is not None and stage.engine.split.get("plain") is None
    return timings["chat"], timings["plain"]


async def requests(
    client: httpx.AsyncClient,
    n: int,
    groups: tuple[str, str] = ("chat", "plain"),
    *,
    stream: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[float], list[float]]:
    timings: dict[str, list[float]] = {groups[0]: [], groups[1]: []}
    for i in range(n // 20):
        for group in groups if i % 2 else tuple(reversed(groups)):
            for j in range(10):
                text = f"q {i} {j}" + (" lorem ipsum" * 40 if stream else "")  # a stream: >= 128 chunks of text
                body = {"model": group, "messages": [{"role": "user", "content": text}], "stream": stream}
                started = clock()
                response = await client.post("/v1/chat/completions", json=body, headers={"x-margin-session": f"{i}{j}"})
                timings[group].append((clock() - started) * 1000)
                assert response.status_code == 200
    return timings[groups[0]], timings[groups[1]]


async def main(args: argparse.Namespace) -> None:
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    print(f"requests timed in {'CPU time of the event loop thread' if args.clock == 'cpu' else 'wall-clock time'}")
    with tempfile.TemporaryDirectory() as data:
        text = CONFIG.format(data=data, GRADER="{type: regex, pattern: '.'}")
        app = create_app(parse_config(text), key_store=MemoryKeyStore())
        async with app.router.lifespan_context(app):
            pipeline = app.state.gateway.pipeline
            stage: RolloutStage = pipeline.router.rollouts
            record = await stage.engine.service.start("chat", "small", actor="bench")
            for _ in range(2):
                await stage.engine.service.promote(record.rollout_id, actor="bench")  # gated, canary 25%
            await stage.engine.refresh()
            with_rollout, without = route_stage(stage, pipeline.router, args.decisions)
            print(f"route stage, {args.decisions} decisions each (microseconds):")
            print(f"  with a canary rollout  p50 {statistics.median(with_rollout):6.2f}  p99 {p99(with_rollout):6.2f}")
            print(f"  without                p50 {statistics.median(without):6.2f}  p99 {p99(without):6.2f}")
            added = statistics.median(with_rollout) - statistics.median(without)
            print(f"  added by the split     p50 {added:6.2f} us = {added / 1000:.4f} ms (target <= 0.05 ms)")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                await requests(client, 200)  # warm up
                chat, plain = await requests(client, args.requests, clock=clock)
            print(f"whole requests in process, {args.requests // 2} each (milliseconds):")
            print(f"  with a canary rollout  p50 {statistics.median(chat):.3f}")
            print(f"  without                p50 {statistics.median(plain):.3f}")
            print(f"  difference             p50 {statistics.median(chat) - statistics.median(plain):+.3f} ms")
            mirrored = await stage.engine.service.start("mirrored", "small3", actor="bench")
            await stage.engine.service.promote(mirrored.rollout_id, actor="bench")  # gated
            await stage.engine.decide_all()  # -> shadow: every request of `mirrored` is also sent to small3
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                noise = [await requests(client, args.requests, ("plain", "chat"), clock=clock) for _ in range(2)]
                shadowed, plain2 = await requests(client, args.requests, ("mirrored", "plain"), clock=clock)
            await stage.shadows.queue.join()
            print(f"shadow traffic (every request mirrored), {args.requests // 2} each (milliseconds):")
            print(f"  mirrored group         p50 {statistics.median(shadowed):.3f}")
            print(f"  plain group            p50 {statistics.median(plain2):.3f}")
            print(f"  difference             p50 {statistics.median(shadowed) - statistics.median(plain2):+.3f} ms")
            spread = [statistics.median(a) - statistics.median(b) for a, b in noise]
            print(f"  run-to-run noise (two runs of plain vs canary): {', '.join(f'{d:+.3f}' for d in spread)} ms")
            await streams(app, stage, args.streams, clock)


async def streams(app: object, stage: RolloutStage, n: int, clock: Callable[[], float]) -> None:
    for group, candidate in (("graded16", "c16"), ("graded128", "c128")):
        record = await stage.engine.service.start(group, candidate, actor="bench")
        for _ in range(2):
            await stage.engine.service.promote(record.rollout_id, actor="bench")  # gated, canary 25%
    await stage.engine.refresh()
    p50: dict[tuple[str, str], tuple[float, float]] = {}  # each pair interleaved in its own run
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        for pair in (
            ("graded16", "plain16"),
            ("graded128", "plain128"),
            ("same16", "plain16"),
            ("same128", "plain128"),
        ):
            await requests(client, 200, pair, stream=True)  # warm up
            first, second = await requests(client, n, pair, stream=True, clock=clock)
            p50[pair] = statistics.median(first), statistics.median(second)
    await stage.grading.queue.join()
    print(f"streamed requests, {n // 2} each per length (milliseconds; every answer graded under the rollout):")
    for chunks in (16, 128):
        graded, plain = p50[(f"graded{chunks}", f"plain{chunks}")]
        print(f"  {chunks:3d} chunks  with a rollout p50 {graded:.3f}  without {plain:.3f}")
    print("  " + _per_chunk(p50, "graded", "with a rollout"))
    print("  noise: " + _per_chunk(p50, "same", "a second group without a rollout"))


def _per_chunk(p50: dict[tuple[str, str], tuple[float, float]], group: str, label: str) -> str:
    """Each further chunk's cost: the 128-chunk minus the 16-chunk p50, over 112 chunks."""
    (a16, b16), (a128, b128) = p50[(f"{group}16", "plain16")], p50[(f"{group}128", "plain128")]
    first, second = (a128 - a16) / 112 * 1000, (b128 - b16) / 112 * 1000
    return (
        f"{label}: {a16 - b16:+.3f} ms at 16 chunks, {a128 - b128:+.3f} ms at 128; per further chunk "
        f"{first:.2f} against {second:.2f} us ({first - second:+.2f} us)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=2000)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: the loop thread's CPU time")
    asyncio.run(main(parser.parse_args()))
