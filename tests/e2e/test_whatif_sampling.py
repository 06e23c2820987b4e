"""`margin whatif run` with live sampling, end to end: the installed script sends a sample of the
recorded traffic's cache misses to the weak tier of a served margin in front of the fake upstream
(two deployments: `strong` echoes the prompt, `weak` answers 30% of prompts "I do not know."), grades
each answer against the recorded one, and fits the router on the graded sample.

Checked against what the test computes on its own: the sample's size from the formula, each sampled
prompt's grade from the fake's published rule (`answered_wrongly`), the calls as ledger rows tagged
`whatif` at class batch whose metered cost is the report's spend, and the router's cost at its
operating point over every miss (sampled ones at the weak answer's token counts, the rest at the
recorded ones). A budget too small for the confidence, and a cost cap too small for the sample, are
refused with what they would need; no call is made and the rest of the report is still there."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from statistics import NormalDist
from typing import Any

import pytest

from margin.providers.fake.engine import WRONG_ANSWER, answered_wrongly, count_tokens, prompt_tokens
from tests.support.cli import run_margin
from tests.support.processes import fake_upstream, gateway

WRONG = 0.3
PROMPTS = 120
MILLION = Decimal(1_000_000)
STRONG_PRICE = (Decimal(10), Decimal(30))
WEAK_PRICE = (Decimal("0.6"), Decimal("0.6"))
JUDGE_PRICE = (Decimal("1"), Decimal("2"))


def margin_config(upstream: str) -> str:
    def deployment(name: str, price: tuple[Decimal, Decimal]) -> str:
        return (
            f"  - {{name: {name}, provider: openai_compat, model: fake-{name}, base_url: '{upstream}/v1', "
            f'price: {{input: "{price[0]}", output: "{price[1]}"}}}}\n'
        )

    return (
        "deployments:\n" + deployment("strong", STRONG_PRICE) + deployment("weak", WEAK_PRICE)
        + deployment("judge", JUDGE_PRICE)
        + "models:\n  - {name: strong, deployments: [strong]}\n  - {name: weak, deployments: [weak]}\n"
        "  - {name: judge, deployments: [judge]}\n"
    )  # fmt: skip


@dataclass(frozen=True)
class Served:
    url: str
    tmp: Path

    @property
    def ledger(self) -> Path:
        return self.tmp / "data" / "margin.db"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("whatif-live")
    faults = ("--fault", f"fake-weak=wrong={WRONG}", "--fault", "fake-judge=judge")
    with fake_upstream(*faults) as upstream, gateway(margin_config(upstream), tmp) as url:
        yield Served(url, tmp)


def prompt(i: int) -> str:
    return f"Which fleet size fits workload number {i:04d} best?"  # every prompt the same length


def recorded(i: int, ts: float) -> dict[str, Any]:
    """The strong tier's answer as the fake gives it (an echo), with the fake's token counts."""
    messages = [{"role": "user", "content": prompt(i)}]
    usage = {"prompt_tokens": prompt_tokens(messages), "completion_tokens": count_tokens(prompt(i))}
    answer = {"role": "assistant", "content": prompt(i)}
    return {
        "timestamp": ts,
        "request": {"model": "strong", "messages": messages, "temperature": 0},
        "response": {"model": "strong", "choices": [{"message": answer}], "usage": usage},
    }


def write_traffic(tmp: Path) -> Path:
    lines = [recorded(i, float(i)) for i in range(PROMPTS)]
    lines += [recorded(i, 10_000.0 + i) for i in range(0, PROMPTS, 4)]  # repeats within the TTL: exact hits
    path = tmp / "traffic.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def candidate(served: Served, name: str, **sampling: Any) -> Path:
    path = served.tmp / f"{name}.yaml"
    config = {
        "tiers": {"strong": "strong", "weak": "weak"},
        "cache": {"exact": {"ttl_s": 86_400}},
        "routing": {"quality_target": 0.7, "confidence": 0.9, "resamples": 300, "min_labelled": 10},
        "prices": {
            "strong": {"input": str(STRONG_PRICE[0]), "output": str(STRONG_PRICE[1]), "provider": "fake"},
            "weak": {"input": str(WEAK_PRICE[0]), "output": str(WEAK_PRICE[1]), "provider": "fake"},
            "judge": {"input": str(JUDGE_PRICE[0]), "output": str(JUDGE_PRICE[1]), "provider": "fake"},
        },
        "sampling": {"url": served.url, "grader": "normalised", "margin": 0.1, **sampling},
    }
    path.write_text(json.dumps(config))
    return path


def whatif(served: Served, name: str, **sampling: Any) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    out = served.tmp / f"out-{name}"
    done = run_margin("whatif", "run", write_traffic(served.tmp), "--config", candidate(served, name, **sampling),
                      "--out", out, data_dir=served.tmp / "cli-data")  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    decisions = [json.loads(x) for x in (out / "decisions.jsonl").read_text().splitlines()]
    return report, decisions, done.stdout


def whatif_rows(db: Path, expected: int, timeout: float = 15) -> list[sqlite3.Row]:
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT * FROM ledger_attempts WHERE tags LIKE '%\"whatif\"%'").fetchall()
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def needed() -> int:
    z = NormalDist().inv_cdf(0.9)
    return math.ceil(z * z / (4 * 0.1 * 0.1))  # 42: the worst-case variance of a grade in [0, 1]


def weak_cost(i: int, sampled: bool) -> Decimal:
    messages = [{"role": "user", "content": prompt(i)}]
    wrong = sampled and answered_wrongly(prompt(i), WRONG)
    output = count_tokens(WRONG_ANSWER if wrong else prompt(i))  # unsampled: the recorded answer's length
    return (prompt_tokens(messages) * WEAK_PRICE[0] + output * WEAK_PRICE[1]) / MILLION


def strong_cost(i: int) -> Decimal:
    messages = [{"role": "user", "content": prompt(i)}]
    return (prompt_tokens(messages) * STRONG_PRICE[0] + count_tokens(prompt(i)) * STRONG_PRICE[1]) / MILLION


def test_a_refused_budget_or_cap_sends_nothing_and_the_report_stands(served: Served) -> None:
    report, _, stdout = whatif(served, "budget", max_samples=10)
    n = needed()
    refusal = report["sampling"]["refusal"]
    assert f"a sample of {n} distinct prompts is needed" in refusal and f"raise it to {n}" in refusal
    assert report["cache"]["exact_hits"] == PROMPTS // 4 and report["current_cost_usd"]  # the rest is there
    assert "routing lever not projected" in report["routing"]["status"] and "live sampling refused" in stdout
    estimate = n * weak_cost(0, sampled=False)  # every prompt has the same token counts
    assert Decimal(report["sampling"]["estimated_cost_usd"]) == estimate
    report, _, _ = whatif(served, "cap", cost_cap_usd=str(estimate / 2))
    refusal = report["sampling"]["refusal"]
    assert f"costs about {estimate:.4f} USD" in refusal and f"which buys about {n // 2}" in refusal
    assert whatif_rows(served.ledger, 0, timeout=0.5) == []  # no call was made


def test_the_sample_is_sent_through_margin_graded_and_projected(served: Served) -> None:
    report, decisions, stdout = whatif(served, "live", cost_cap_usd="1")
    sampling = report["sampling"]
    n = needed()
    assert sampling["refusal"] is None and sampling["drawn"] == n and sampling["population"] == PROMPTS
    assert sampling["calls"] == n and sampling["graded"] == n and sampling["failed"] == 0
    rows = whatif_rows(served.ledger, n)
    assert len(rows) == n and {(r["endpoint_class"], r["deployment"]) for r in rows} == {("batch", "weak")}
    assert all(json.loads(r["tags"]) == ["whatif"] for r in rows)
    assert Decimal(sampling["spent_usd"]) == sum((Decimal(r["cost_total"]) for r in rows), Decimal(0))
    # Each sampled prompt's grade is the fake's rule: the echo matches the recorded answer.
    graded = {d["line"]: d for d in decisions if d["weak_quality"] is not None}
    sampled = {line - 1 for line in graded if line <= PROMPTS}
    assert len(sampled) == n
    for i in sampled:
        assert graded[i + 1]["weak_quality"] == (0.0 if answered_wrongly(prompt(i), WRONG) else 1.0)
        assert graded[i + 1]["quality"] == 1.0  # the recorded answer against itself
    # The router's cost at its operating point, over every miss, computed here.
    routing = report["routing"]
    point = routing["operating_point"]
    misses = [d for d in decisions if d["cache"] == "miss"]
    assert routing["requests"] == len(misses) == PROMPTS and routing["graded_requests"] == n
    cost = Decimal(0)
    for d in misses:
        i = d["line"] - 1
        to_weak = point["threshold"] is None or d["router_score"] < point["threshold"]
        assert (d["tier"] == "weak") == to_weak
        cost += weak_cost(i, i in sampled) if to_weak else strong_cost(i)
    assert Decimal(point["cost_usd"]) == cost
    assert point["quality_interval"][0] >= 0.7 and "live sample:" in stdout and "tagged whatif" in stdout


def test_a_judge_grades_the_sample_and_its_calls_are_counted_and_capped(served: Served) -> None:
    n = needed()
    weak_only = n * weak_cost(0, sampled=False)
    judge = {"grader": {"type": "judge", "model": "judge"}}
    report, _, _ = whatif(served, "judge-cap", cost_cap_usd=str(weak_only * 2), **judge)
    assert "live sampling refused" in report["sampling"]["refusal"]  # the judge's calls are in the estimate
    assert Decimal(report["sampling"]["estimated_cost_usd"]) > weak_only * 2
    before = len(whatif_rows(served.ledger, 0, timeout=0.5))
    report, decisions, _ = whatif(served, "judge", cost_cap_usd="1", **judge)
    sampling = report["sampling"]
    # Each sample: the weak call, and the judge in both orders on the weak answer and on the recorded one.
    assert sampling["calls"] == n and sampling["judge_calls"] == 4 * n and sampling["graded"] == n
    rows = whatif_rows(served.ledger, before + 5 * n)[before:]
    assert len(rows) == 5 * n and sum(r["deployment"] == "judge" for r in rows) == 4 * n
    assert Decimal(sampling["spent_usd"]) == sum((Decimal(r["cost_total"]) for r in rows), Decimal(0))
    graded = [d for d in decisions if d["weak_quality"] is not None]
    assert len(graded) == n and all(d["line"] <= PROMPTS and d["quality"] == 1.0 for d in graded)
    for d in graded:  # the fake judge: 0 for "I do not know.", the top of the scale otherwise
        assert d["weak_quality"] == (0.0 if answered_wrongly(prompt(d["line"] - 1), WRONG) else 1.0)
