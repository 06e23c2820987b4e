"""`margin plan --from-ledger` end to end: serve margin on loopback with a fresh data directory, send real
calls through it with the openai SDK, then run the installed `margin` entry point on that data directory and
check what the planner measured (requests, tokens, cache hits, spend, cost_rank mix) against the calls sent.

The config overrides one catalog price (metering.prices); the gateway bills with it and the planner prices the
same API with it: one place where a price lives.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.processes import fake_upstream, gateway

MARGIN = Path(sys.executable).parent / "margin"  # the installed console script
MINI_IN, MINI_OUT = Decimal("0.80"), Decimal("1.60")  # gpt-4.1-mini, input overridden in the config below
NANO_IN, NANO_OUT = Decimal("0.10"), Decimal("0.40")  # gpt-4.1-nano, the shipped catalog's price
HOURS_PER_MONTH = Decimal(730)

PROFILE = """
name: measured chat
requests_per_day: 1000                  # replaced by the ledger's figure
input_tokens: {mean: 100, p95: 200}
output_tokens: {mean: 50, p95: 100}
sla: {ttft_ms: 2000, p95_ms: 30000}
ops_capacity: dedicated
candidates:
  apis: [openai/gpt-4.1-mini]
  models: [llama-3.1-8b]
  gpus: [a10g]
  providers: [aws]
  precisions: [fp16]
  pricing: [on_demand]
  managed: []
hybrid:
  premium_api: openai/gpt-4.1-mini
  tiers:
    - {name: small, option: "api:openai/gpt-4.1-mini", share: 0.5, cost_ranks: [1]}
    - {name: premium, option: "api:openai/gpt-4.1-mini", share: 0.5, cost_ranks: [2]}
"""


def config(upstream: str) -> str:
    return f"""
metering:
  prices:
    gpt-4.1-mini: {{input: "{MINI_IN}"}}
deployments:
  - {{name: mini, provider: openai_compat, model: gpt-4.1-mini, base_url: "{upstream}/v1", cost_rank: 2}}
  - {{name: nano, provider: openai_compat, model: gpt-4.1-nano, base_url: "{upstream}/v1", cost_rank: 1}}
models:
  - {{name: chat, deployments: [mini]}}
  - {{name: quick, deployments: [nano]}}
"""


@dataclass
class Sent:
    """What the client saw: per model group, requests and tokens billed; and the cache hits."""

    requests: dict[str, int]
    input_tokens: dict[str, int]
    output_tokens: dict[str, int]
    cache_hits: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Sent]]:
    tmp = tmp_path_factory.mktemp("plan")
    with fake_upstream() as upstream, gateway(config(upstream), tmp) as url:
        sent = _send_calls(openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0))
        _wait_for_ledger(tmp / "data" / "margin.db", sum(sent.requests.values()))
        yield tmp, sent


def _send_calls(client: openai.OpenAI) -> Sent:
    sent = Sent({"chat": 0, "quick": 0}, {"chat": 0, "quick": 0}, {"chat": 0, "quick": 0}, 0)
    calls = [("chat", f"question {i} about the weather in city {i}", False) for i in range(5)]
    calls += [("quick", f"short question number {i}", i == 1) for i in range(3)]
    calls += [("chat", "one deterministic question", False)] * 2  # temperature 0: the second is a cache hit
    for group, prompt, stream in calls:
        sent.requests[group] += 1
        usage, headers = _call(client, group, prompt, stream)
        if headers.get("x-margin-cache") == "exact":
            sent.cache_hits += 1  # nothing was called: the ledger row holds no usage
            continue
        sent.input_tokens[group] += usage[0]
        sent.output_tokens[group] += usage[1]
    return sent


def _call(client: openai.OpenAI, group: str, prompt: str, stream: bool) -> tuple[tuple[int, int], Any]:
    messages: list[Any] = [{"role": "user", "content": prompt}]
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model=group, messages=messages, stream=True, stream_options={"include_usage": True}
        ) as response:
            chunks = list(response.parse())
        usage = chunks[-1].usage
        assert usage is not None
        return (usage.prompt_tokens, usage.completion_tokens), response.headers
    raw = client.chat.completions.with_raw_response.create(model=group, messages=messages, temperature=0)
    completion = raw.parse()
    assert completion.usage is not None
    return (completion.usage.prompt_tokens, completion.usage.completion_tokens), raw.headers


def _wait_for_ledger(db: Path, requests: int, timeout: float = 15.0) -> None:
    """The ledger writer flushes in the background: wait until every request's row is stored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as conn:
                (stored,) = conn.execute("SELECT COUNT(*) FROM ledger_attempts").fetchone()
            if stored >= requests:
                return
        time.sleep(0.05)
    raise AssertionError(f"the ledger did not hold {requests} rows within {timeout}s")


def run_plan(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp / "profile.yaml"
    profile.write_text(PROFILE)
    command = [str(MARGIN), "plan", str(profile), "--from-ledger", "--config", str(tmp / "margin.yaml"), *args]
    env = {**os.environ, "MARGIN_DATA_DIR": str(tmp / "data")}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


def _plan_json(tmp: Path, *args: str) -> dict[str, Any]:
    done = run_plan(tmp, "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def _expected_spend(sent: Sent) -> Decimal:
    mini = sent.input_tokens["chat"] * MINI_IN + sent.output_tokens["chat"] * MINI_OUT
    nano = sent.input_tokens["quick"] * NANO_IN + sent.output_tokens["quick"] * NANO_OUT
    return (mini + nano) / 1_000_000


def test_the_plan_reports_what_the_ledger_recorded(served: tuple[Path, Sent]) -> None:
    tmp, sent = served
    assert MARGIN.is_file(), f"the margin console script is not installed next to {sys.executable}"
    document = _plan_json(tmp)
    ledger = document["ledger"]
    assert ledger["requests"] == sum(sent.requests.values()) == 10
    assert ledger["input_tokens"] == sum(sent.input_tokens.values()) > 0
    assert ledger["output_tokens"] == sum(sent.output_tokens.values()) > 0
    assert ledger["cache_hits"] == sent.cache_hits == 1
    assert Decimal(ledger["spend_usd"]) == _expected_spend(sent)  # billed at the overridden $0.80/M input
    assert ledger["model_group"] is None
    profile = document["profile"]
    assert profile["requests_per_day"] == pytest.approx(10 / ledger["days"])
    assert profile["input_tokens"]["mean"] == pytest.approx(ledger["input_tokens"] / 10)
    assert profile["hybrid"]["cache_hit_rate"] == pytest.approx(0.1)
    shares = {t["name"]: t["share"] for t in profile["hybrid"]["tiers"]}
    assert shares == pytest.approx({"small": 3 / 9, "premium": 6 / 9})  # cost_rank 1 served "quick"


def test_the_planner_prices_the_api_with_the_configured_catalog_price(served: tuple[Path, Sent]) -> None:
    document = _plan_json(served[0])
    assert {v.split(":")[0] for v in document["price_catalog"]} == {"builtin", "config"}  # one entry overridden
    ledger, profile = document["ledger"], document["profile"]
    options = {o["option_id"]: o for o in document["classes"][0]["scenarios"][0]["options"]}
    tokens_in, tokens_out = (Decimal(repr(profile[k]["mean"])) for k in ("input_tokens", "output_tokens"))
    per_request = (tokens_in * MINI_IN + tokens_out * MINI_OUT) / 1_000_000
    monthly = Decimal(repr(10 / ledger["days"])) * per_request * HOURS_PER_MONTH / 24
    assert float(options["api:openai/gpt-4.1-mini"]["total"]) == pytest.approx(float(monthly), rel=1e-9)


def test_one_model_group_and_the_table_format(served: tuple[Path, Sent]) -> None:
    tmp, sent = served
    ledger = _plan_json(tmp, "--model-group", "quick")["ledger"]
    assert (ledger["model_group"], ledger["requests"], ledger["cache_hits"]) == ("quick", 3, 0)
    assert (ledger["input_tokens"], ledger["output_tokens"]) == (
        sent.input_tokens["quick"],
        sent.output_tokens["quick"],
    )
    nano = (sent.input_tokens["quick"] * NANO_IN + sent.output_tokens["quick"] * NANO_OUT) / 1_000_000
    assert Decimal(ledger["spend_usd"]) == nano
    table = run_plan(tmp)
    assert table.returncode == 0, table.stderr
    assert "Measured from the ledger: 10 requests over" in table.stdout
    assert f"spend ${_expected_spend(sent):f}" in table.stdout


def test_an_empty_ledger_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "margin.yaml").write_text("deployments: []\nmodels: []\n")
    done = run_plan(tmp_path)
    assert done.returncode == 1
    assert "no requests in the ledger" in done.stderr
