"""`margin whatif` headline (issue 25): savings at >= 95% of the strong model's quality on a mixed
MMLU + GSM8K + MT-Bench workload from ../shared/data/routellm (folds 1-4, uncontaminated), per
lever, and the runtime of the cache + router stage.

The traffic: every prompt sent once to gpt-4-1106-preview (10/30 USD per million tokens, the
catalog's entry), plus repeats of earlier prompts (`--repeat`,
default 25%: each repeat picks one of the last 2,000 prompts sent, so most fall inside the one-day
TTL); one request every 10 s. The weak tier is Mixtral-8x7B (together, 0.60/0.60 from the catalog),
graded by the recorded weak score; MT-Bench's 1-10 grades read as grade / 10. Nothing here was
tuned on this workload: the router's training settings are margin.whatif.routing's fixed ones.

Sampled (`--sample-margins 0.05,0.025`): the same traffic without the weak tier's grades, the router
fitted on a live-sample-sized sample only (margin.whatif.sampling: 271 prompts for +-0.05 at 95%), the
"calls" answered offline by the recorded weak grades and token counts (what a live sample through margin
would have graded, without paying for it). Every prompt's weak grade is known here, so the quality the
operating point would really have on all the misses is printed beside the projected interval: a check
of the interval on prompts the router was not fitted on.

Run: .venv/bin/python bench/whatif.py [--repeat 0.25] [--runtime-requests 100000] [--max-train 20000]
     [--sample-margins 0.05,0.025]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from margin.types import Usage
from margin.whatif.config import parse_whatif_config
from margin.whatif.live import SampleResult
from margin.whatif.report import report_json
from margin.whatif.run import run_whatif
from margin.whatif.sampling import SamplePlan
from margin.whatif.traffic import Record, parse_lines

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routellm" / "routellm_pairs_train.jsonl"
STRONG = "gpt-4-1106-preview"
WEAK = "together/mistralai/Mixtral-8x7B-Instruct-v0.1"
RECENT = 2000


def grade(row: dict[str, Any], name: str) -> float:
    return float(row[name]) / 10 if row["benchmark"] == "mtbench" else float(row[name])


def line(row: dict[str, Any], ts: float) -> str:
    prompt, out_s, out_w = row["in_tokens_est"], row["strong_out_tokens_est"], row["weak_out_tokens_est"]
    return json.dumps(
        {
            "timestamp": ts,
            "task": row["benchmark"],
            "request": {"model": STRONG, "messages": [{"role": "user", "content": row["prompt"]}], "temperature": 0},
            "response": {"model": STRONG, "usage": {"prompt_tokens": prompt, "completion_tokens": out_s}},
            "quality": grade(row, "strong_score"),
            "tiers": {
                WEAK: {
                    "quality": grade(row, "weak_score"),
                    "usage": {"prompt_tokens": prompt, "completion_tokens": out_w},
                }
            },
        }
    )


def workload(rows: list[dict[str, Any]], total: int, repeat: float, seed: int = 11) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    order = list(rows)
    rng.shuffle(order)
    fresh = iter(order)
    sent: list[dict[str, Any]] = []
    lines = []
    for i in range(total):
        row = next(fresh, None) if not sent or rng.random() >= repeat else None
        if row is None:
            row = rng.choice(sent[-RECENT:])
        else:
            sent.append(row)
        lines.append((i + 1, line(row, i * 10.0)))
    return lines


def run(lines: list[tuple[int, str]], max_train: int = 20_000) -> tuple[dict[str, Any], float]:
    config = parse_whatif_config(
        {
            "tiers": {"strong": STRONG, "weak": WEAK},
            "cache": {"exact": {"ttl_s": 86_400}},
            "routing": {"quality_target": 0.95, "confidence": 0.95, "max_train_prompts": max_train},
        }
    )
    started = time.perf_counter()
    report = report_json(run_whatif(parse_lines(lines), config))
    return report, time.perf_counter() - started


def summary(report: dict[str, Any], seconds: float) -> None:
    current = float(report["current_cost_usd"])
    cache = float(report["cache"]["saved_exact_usd"])
    routing = report["routing"]
    point = routing.get("operating_point", {})
    saved = float(routing.get("saved_usd", 0))
    print(f"  requests {report['records']}, exact hits {report['cache']['exact_hits']}, runtime {seconds:.1f} s")
    print(f"  current cost (all strong)  {current:12.4f} USD")
    print(f"  cache saves                {cache:12.4f} USD  {cache / current:6.1%}")
    alone = float(routing.get("alone_saved_usd", 0))
    print(f"  router alone saves         {alone:12.4f} USD  {alone / current:6.1%}")
    print(f"  router saves (after cache) {saved:12.4f} USD  {saved / current:6.1%}")
    after = float(report["all_levers_cost_usd"])
    print(f"  all levers                 {after:12.4f} USD  {report['savings_share']:6.1%} saved")
    if point:
        low, high = point["quality_interval"]
        print(
            f"  router: {point['weak_share']:.1%} of misses to the weak tier, quality {point['quality_ratio']:.1%} of"
            f" strong, lower bound {low:.1%} (one-sided {routing['confidence']:.0%}), upper {high:.1%},"
            f" threshold {point['threshold']:.4f}"
        )
        print(f"  (strong quality {routing['strong_quality']:.4f}, weak {routing['weak_quality']:.4f})")


class RecordedSampler:
    """Answers a sample plan from the recorded weak grades and token counts (no calls)."""

    def __init__(self, weak: dict[str, tuple[float, int, int]]) -> None:
        self.weak = weak  # prompt -> (weak grade, prompt tokens, weak output tokens)

    def __call__(self, plan: SamplePlan, records: Sequence[Record], weak: str) -> SampleResult:
        result = SampleResult()
        for index in plan.drawn:
            record = records[index]
            grade, prompt, output = self.weak[record.request.messages[-1]["content"]]
            result.grades[index] = (record.quality or 0.0, grade, Usage(input_uncached=prompt, output=output))
            result.calls += 1
        return result


def without_weak(row: dict[str, Any]) -> dict[str, Any]:
    """The line as a team's log has it: no weak grade; the recorded answer's text (the RouteLLM data
    has none: a stand-in, which the offline sampler never grades) is what live sampling needs."""
    answer = {"message": {"role": "assistant", "content": "(the recorded answer)"}}
    row["response"]["choices"] = [answer]
    return {k: v for k, v in row.items() if k != "tiers"}


def sampled(lines: list[tuple[int, str]], margin: float, max_train: int) -> None:
    rows = [json.loads(text) for _, text in lines]
    weak = {
        r["request"]["messages"][-1]["content"]: (
            r["tiers"][WEAK]["quality"], r["response"]["usage"]["prompt_tokens"],
            r["tiers"][WEAK]["usage"]["completion_tokens"],
        )
        for r in rows
    }  # fmt: skip
    stripped = [(n, json.dumps(without_weak(json.loads(text)))) for n, text in lines]
    config = parse_whatif_config(
        {
            "tiers": {"strong": STRONG, "weak": WEAK},
            "cache": {"exact": {"ttl_s": 86_400}},
            "routing": {"quality_target": 0.95, "confidence": 0.95, "max_train_prompts": max_train},
            "sampling": {"url": "http://offline.invalid", "margin": margin, "max_samples": 100_000},
        }
    )
    started = time.perf_counter()
    report = run_whatif(parse_lines(stripped), config, RecordedSampler(weak))
    seconds = time.perf_counter() - started
    body = report_json(report)
    plan = body["sampling"]
    print(f"sampled: margin +-{margin} -> {plan['drawn']} of {plan['population']} distinct prompts graded"
          f" (estimated {float(plan['estimated_cost_usd']):.2f} USD at catalog prices)")  # fmt: skip
    summary(body, seconds)
    if report.routing is None:
        return
    to_weak = report.routing.routed_weak()
    misses = [i for i, o in enumerate(report.cache.outcomes) if o == "miss"]
    routed = sum(weak[report.records[i].request.messages[-1]["content"]][0] if i in to_weak
                 else report.records[i].quality or 0.0 for i in misses)  # fmt: skip
    strong = sum(report.records[i].quality or 0.0 for i in misses)
    print(f"  true quality of that routing on all {len(misses)} misses: {routed / strong:.1%} of strong")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=float, default=0.25)
    parser.add_argument("--runtime-requests", type=int, default=100_000)
    parser.add_argument("--max-train", type=int, default=20_000, help="routing.max_train_prompts")
    parser.add_argument("--sample-margins", default="0.05,0.025", help="live-sample interval half-widths; '' = none")
    args = parser.parse_args()
    with DATA.open(encoding="utf-8") as handle:
        rows = [r for r in map(json.loads, handle) if not r["contaminated"]]
    total = round(len(rows) / (1 - args.repeat))
    print(f"headline: {len(rows)} distinct prompts, {total} requests ({args.repeat:.0%} repeats)")
    headline = workload(rows, total, args.repeat)
    summary(*run(headline, args.max_train))
    for margin in filter(None, args.sample_margins.split(",")):
        sampled(headline, float(margin), args.max_train)
    if args.runtime_requests:
        print(f"runtime: {args.runtime_requests} requests through cache + router (target <= 60 s)")
        summary(*run(workload(rows, args.runtime_requests, 1 - len(rows) / args.runtime_requests), args.max_train))


if __name__ == "__main__":
    main()
