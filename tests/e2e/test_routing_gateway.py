"""Tiered routing through a real `margin serve`, the fake upstream and the openai SDK: rules, pins
and caps, a logprob cascade (plain and streamed), overflow from a tier that is down, the route
headers, the metrics, and `margin report --by cost_rank` with the all-premium counterfactual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.processes import fake_upstream, gateway

# The fake's logprobs are -0.05 per character of each word: the cascade's floor of -0.3 accepts an
# answer of short words and rejects one of long words (the fake echoes the prompt).
EASY, HARD = "yes it is ok", "incomprehensibilities notwithstanding"


def config(upstream: str) -> str:
    def deployment(name: str, model: str, cost_rank: int, price: str) -> str:
        return f"""  - name: {name}
    provider: openai_compat
    model: {model}
    base_url: {upstream}/v1
    cost_rank: {cost_rank}
    price: {price}
"""

    return f"""
cache: {{enabled: false}}
deployments:
{deployment("cheap", "fake-cheap", 1, '{input: "0.15", output: "0.60"}')}
{deployment("cheap-down", "fake-down", 1, '{input: "0.15", output: "0.60"}')}
{deployment("premium", "fake-premium", 3, '{input: "5", output: "15"}')}
models:
  - name: auto
    aliases: [smart]
    tiers:
      - {{name: cheap, deployments: [cheap]}}
      - {{name: premium, deployments: [premium]}}
    routing:
      rules:
        - {{name: tools, when: {{tools: true}}, tier: premium}}
        - {{name: code, when: {{task: [code]}}, tier: premium}}
      cascade: {{checks: [format, json, logprob], min_mean_logprob: -0.3}}
  - name: flaky
    tiers:
      - {{name: cheap, deployments: [cheap-down]}}
      - {{name: premium, deployments: [premium]}}
    routing: {{default_tier: cheap}}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("routing")
    with fake_upstream("--fault", "fake-down=status=503") as upstream, gateway(config(upstream), tmp) as url:
        yield url, tmp


@pytest.fixture
def client(served: tuple[str, Path]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served[0]}/v1", api_key="unused", max_retries=0)


def ask(client: openai.OpenAI, text: str, model: str = "margin/auto", **extra: object):  # type: ignore[no-untyped-def]
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **extra
    )


def test_an_easy_prompt_is_answered_by_the_cheap_tier_after_its_check(client: openai.OpenAI) -> None:
    raw = ask(client, EASY)
    assert raw.headers["x-margin-route"].startswith("cascade;tier=cheap;deployment=cheap")
    assert raw.headers["x-margin-cascade"] == "accepted"
    assert raw.headers["x-margin-cost-rank"] == "1" and raw.headers["x-margin-deployment"] == "cheap"
    assert raw.headers["x-margin-tier"] == "1"  # the deprecated name of x-margin-cost-rank, one more release
    assert raw.parse().choices[0].logprobs is None  # margin asked for them, the client did not


def test_a_hard_prompt_escalates_and_both_attempts_are_billed(client: openai.OpenAI) -> None:
    raw = ask(client, HARD)
    assert raw.headers["x-margin-cascade"] == "escalated"
    assert raw.headers["x-margin-cascade-check"].startswith("logprob=")
    assert raw.headers["x-margin-route"].startswith("cascade;tier=premium;deployment=premium;chosen=cheap")
    assert raw.headers["x-margin-attempts"] == "2"
    usage = raw.parse().usage
    assert usage is not None
    premium_only = (Decimal(usage.prompt_tokens) * 5 + Decimal(usage.completion_tokens) * 15) / 10**6
    assert Decimal(raw.headers["x-margin-cost-usd"]) > premium_only  # the cheap attempt is on the bill


def test_streams_replay_an_accepted_answer_and_stream_an_escalated_one(client: openai.OpenAI) -> None:
    for text, outcome in ((EASY, "accepted"), (HARD, "escalated")):
        with client.chat.completions.with_streaming_response.create(
            model="smart", messages=[{"role": "user", "content": text}], stream=True,
            stream_options={"include_usage": True},
        ) as response:  # fmt: skip
            assert response.headers["x-margin-cascade"] == outcome
            chunks = list(response.parse())
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_rules_pins_and_caps(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    assert (
        ask(client, EASY, tools=tools).headers["x-margin-route"] == "rules;tier=premium;deployment=premium;rule=tools"
    )
    pinned = ask(client, HARD, extra_headers={"x-margin-tier": "cheap"})
    assert pinned.headers["x-margin-route"] == "pin;tier=cheap;deployment=cheap;pin=cheap"
    capped = ask(client, EASY, metadata={"task": "code"}, extra_headers={"x-margin-max-tier": "cheap"})
    assert capped.headers["x-margin-route"].startswith("rules;tier=cheap;deployment=cheap")
    by_metadata = ask(client, EASY, metadata={"margin_tier": "premium"})
    assert by_metadata.headers["x-margin-route"].startswith("pin;tier=premium")
    with pytest.raises(openai.BadRequestError, match="unknown tier"):
        ask(client, EASY, extra_headers={"x-margin-tier": "gold"})


def test_a_tier_that_is_down_overflows_to_the_next_labelled(client: openai.OpenAI) -> None:
    raw = ask(client, EASY, model="flaky")
    assert raw.headers["x-margin-overflow"] == "cheap->premium"
    assert raw.headers["x-margin-route"].startswith("default;tier=premium;deployment=premium;chosen=cheap")


def test_metrics_and_the_report_by_tier(served: tuple[str, Path], client: openai.OpenAI) -> None:
    url, tmp = served
    for text in (EASY, EASY, HARD):
        ask(client, text)
    metrics = httpx.get(f"{url}/metrics").text
    assert 'margin_route_requests_total{model_group="auto",policy="cascade",tier="cheap"}' in metrics
    assert "margin_cascade_total" in metrics and "margin_router_latency_seconds_bucket" in metrics
    report = wait_for_report(tmp)
    total = report["total"]
    assert Decimal(total["all_premium_usd"]) > Decimal(total["spend_usd"]) > 0
    assert Decimal(total["routing_savings_usd"]) == Decimal(total["all_premium_usd"]) - Decimal(total["spend_usd"])
    tiers = {g["group"]: g for g in report["groups"]}
    assert set(tiers) == {"1", "3"} and tiers["1"]["successful_requests"] > 0


def wait_for_report(tmp: Path, timeout: float = 15.0) -> dict:  # type: ignore[type-arg]
    """`margin report --by cost_rank --format json` once the ledger writer has caught up."""
    deadline = time.monotonic() + timeout
    env = {**os.environ, "MARGIN_DATA_DIR": str(tmp / "data")}
    command = [sys.executable, "-m", "margin", "report", "--by", "cost_rank", "--format", "json", "--config"]
    while True:
        out = subprocess.run([*command, str(tmp / "margin.yaml")], env=env, capture_output=True, check=True, text=True)
        report: dict = json.loads(out.stdout)  # type: ignore[type-arg]
        if report["total"]["requests"] >= 8 or time.monotonic() > deadline:
            return report
        time.sleep(0.3)
