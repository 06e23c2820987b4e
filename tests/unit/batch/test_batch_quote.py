"""`margin batch quote`: worst case at each deployment's dearest buckets and whole output allowance,
expected from the ledger's mean output (or an assumption), unpriced deployments never shown as free,
lines for unknown models counted."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from margin.app import price_book
from margin.batch.quote import Quoter, prompt_tokens
from margin.config import parse_config
from tests.support.cli import run_margin

CONFIG = """
deployments:
  - {name: cheap, provider: fake, model: small, cost_rank: 1, price: {input: "1", output: "2"}}
  - {name: dear, provider: fake, model: big, cost_rank: 2, price: {input: "10", output: "30"}}
  - {name: mystery, provider: fake, model: unknown-model-xyz, cost_rank: 3}
models:
  - {name: chat, deployments: [cheap, dear, mystery]}
limits: {default_max_output_tokens: 1000}
"""


def line(content: str, **body: object) -> dict[str, Any]:
    payload = {"model": "chat", "messages": [{"role": "user", "content": content}], **body}
    return {"custom_id": content, "method": "POST", "url": "/v1/chat/completions", "body": payload}


def test_worst_and_expected_per_deployment(tmp_path: Path) -> None:
    config = parse_config(CONFIG + f"data_dir: {tmp_path}\n")
    lines: list[dict[str, Any]] = [
        line("a" * 400, max_tokens=100),
        line("b" * 40),
        {"body": {"model": "nope", "messages": []}},
    ]
    quote = Quoter(config, price_book(config), mean_output={"cheap": 50.0}).quote(lines)
    assert quote.lines == 3 and quote.unroutable == {"nope": 1}
    prompts = [prompt_tokens(line_["body"]) for line_ in lines[:2]]
    cheap, dear, mystery = quote.tiers["cheap"], quote.tiers["dear"], quote.tiers["mystery"]
    assert cheap.lines == dear.lines == 2 and cheap.input_tokens == sum(prompts)
    assert cheap.worst_output_tokens == 100 + 1000  # max_tokens, then the default allowance
    assert cheap.worst_usd == (Decimal(sum(prompts)) * 1 + Decimal(1100) * 2) / 1_000_000
    assert dear.worst_usd == (Decimal(sum(prompts)) * 10 + Decimal(1100) * 30) / 1_000_000
    assert cheap.expected_usd == (Decimal(sum(prompts)) * 1 + Decimal(50 + 50) * 2) / 1_000_000
    assert dear.expected_usd is None  # no history for it and no assumption: no number made up
    assert not mystery.priced


def test_the_command_prints_each_tier(tmp_path: Path) -> None:
    config = tmp_path / "margin.yaml"
    config.write_text(CONFIG)
    requests = tmp_path / "requests.jsonl"
    requests.write_text("\n".join(json.dumps(line(f"question {n}", max_tokens=10)) for n in range(4)))
    shown = run_margin("batch", "quote", requests, "--config", config, "--expected-output-tokens", "5",
                       data_dir=tmp_path / "data")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    rows = {row.split()[0]: row for row in shown.stdout.splitlines()[2:] if row.split()}
    assert rows["cheap"].split()[1:3] == ["1", "4"] and "unpriced" in rows["mystery"]
    assert shown.stdout.splitlines()[0] == "4 requests"


NATIVE = """
deployments:
  - {name: oa, provider: openai_compat, model: gpt-4o-mini, base_url: "http://127.0.0.1:9/v1", cost_rank: 2}
  - {name: cheap, provider: fake, model: small, cost_rank: 1, price: {input: "1", output: "2"}}
models:
  - {name: mini, deployments: [oa]}
  - {name: chat, deployments: [cheap]}
limits: {default_max_output_tokens: 1000}
batch: {native_deployments: [oa]}
"""


def test_a_batch_bound_for_a_native_deployment_is_quoted_at_its_batch_price(tmp_path: Path) -> None:
    config = parse_config(NATIVE + f"data_dir: {tmp_path}\n")
    local = parse_config(NATIVE.replace("batch: {native_deployments: [oa]}", "") + f"data_dir: {tmp_path}\n")
    lines = [line(f"q{n}", max_tokens=20) for n in range(3)]
    for each in lines:
        each["body"] = {**each["body"], "model": "mini"}
    native = Quoter(config, price_book(config), mean_output={"oa": 10.0}).quote(lines).tiers["oa"]
    standard = Quoter(local, price_book(local), mean_output={"oa": 10.0}).quote(lines).tiers["oa"]
    assert native.native and not standard.native
    assert native.worst_usd == standard.worst_usd / 2 and native.worst_usd > 0  # gpt-4o-mini: batch_multiplier 0.5
    assert native.expected_usd is not None and standard.expected_usd is not None
    assert native.expected_usd == standard.expected_usd / 2
    mixed = Quoter(config, price_book(config), mean_output={}).quote([*lines, line("to the local tier")])
    assert not mixed.tiers["oa"].native  # lines for two deployments: the batch runs local
