"""Sizing the live sample before any call: the size for the confidence, a census when the traffic is
smaller, and the refusals (budget, unknown price, bad grader) with the rest of the report produced.
The calls themselves are tested end to end (tests/e2e/test_whatif_sampling.py)."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from statistics import NormalDist
from typing import Any

from margin.whatif.config import parse_whatif_config
from margin.whatif.report import report_json
from margin.whatif.run import run_whatif
from margin.whatif.sampling import needed_sample
from margin.whatif.traffic import parse_lines

STRONG = "gpt-4-1106-preview"
WEAK = "gpt-4o-mini"


def line(i: int, *, answer: bool = True) -> str:
    body: dict[str, Any] = {"model": STRONG, "messages": [{"role": "user", "content": f"question {i}"}]}
    response: dict[str, Any] = {"model": STRONG, "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}
    if answer:
        response["choices"] = [{"message": {"role": "assistant", "content": f"answer {i}"}}]
    return json.dumps({"timestamp": i, "request": body | {"temperature": 0}, "response": response})


def run(count: int, **sampling: Any) -> dict[str, Any]:
    config = parse_whatif_config(
        {
            "tiers": {"strong": STRONG, "weak": WEAK},
            "routing": {"min_labelled": 10},
            "sampling": {"url": "http://127.0.0.1:9", **sampling},
        }
    )
    lines = [line(i, answer=i % 10 != 0) for i in range(count)]  # every tenth has no answer to grade against
    return report_json(run_whatif(parse_lines(enumerate(lines, start=1)), config))


def test_the_size_is_the_worst_case_for_a_grade_in_zero_one() -> None:
    for confidence, margin in ((0.95, 0.05), (0.95, 0.025), (0.9, 0.1), (0.99, 0.02)):
        z = NormalDist().inv_cdf(confidence)
        assert needed_sample(confidence, margin) == math.ceil(z**2 * 0.5 * 0.5 / margin**2)
    assert needed_sample(0.95, 0.05) == 271


def test_without_a_sampler_the_plan_is_reported_and_nothing_sent() -> None:
    report = run(400, cost_cap_usd="10")
    sampling = report["sampling"]
    assert sampling["population"] == 360 and sampling["drawn"] == 271 and not sampling["census"]
    each = (Decimal(1000) * Decimal("0.15") + Decimal(100) * Decimal("0.60")) / Decimal(1_000_000)
    assert Decimal(sampling["estimated_cost_usd"]) == 271 * each  # gpt-4o-mini on the recorded tokens
    assert any("planned (271 prompts) but not sent" in issue for issue in report["issues"])
    assert report["current_cost_usd"] and report["cache"]["misses"] == 400


def test_a_small_traffic_is_sampled_whole() -> None:
    sampling = run(100)["sampling"]
    assert sampling["population"] == sampling["drawn"] == 90 and sampling["census"] and sampling["needed"] == 271


def test_refusals_say_what_is_needed() -> None:
    budget = run(400, max_samples=50)["sampling"]["refusal"]
    assert "a sample of 271 distinct prompts is needed for +-0.05 at 0.95 confidence (of 360" in budget
    assert "raise it to 271" in budget
    report = run(400, cost_cap_usd="1", grader={"type": "judge", "model": "acme-judge-unpriced"})
    assert "cannot be estimated (no price for the judge 'acme-judge-unpriced')" in report["sampling"]["refusal"]
    assert report["sampling"]["drawn"] == 0 and report["current_cost_usd"]
    bad = run(400, grader={"type": "nonesuch"})["sampling"]["refusal"]
    assert "sampling.grader: unknown grader 'nonesuch'" in bad
