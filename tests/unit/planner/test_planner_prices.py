"""One place where a price lives: a change in metering's price catalog moves the planner's answer."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from planner_helpers import A10G_ONLY, profile

from margin.metering.catalog import load_catalog as load_price_catalog
from margin.planner import load_catalog, plan
from margin.planner.crossover import Crossover
from margin.planner.render.featured import cost_of

A10G_OPTION = "self_hosted:llama-3.1-8b:fp16:a10g:aws-g5.xlarge-us-east-1:on_demand"
API = "api:together/qwen2.5-7b-instruct-turbo"
QWEN = "together/Qwen/Qwen2.5-7B-Instruct-Turbo"  # the metering entry that prices API


def _crossover(prices_overrides: dict[str, dict[str, str]] | None = None, user_file: Path | None = None) -> Crossover:
    prices = load_price_catalog(user_file=user_file, overrides=prices_overrides)
    result = plan(profile(availability={"min_replicas": 1}, candidates=A10G_ONLY), load_catalog(prices=prices))
    crossover = result.classes[0].crossover_for(A10G_OPTION)
    assert crossover is not None
    return crossover


def test_a_dearer_api_in_the_price_catalog_brings_the_crossover_forward() -> None:
    before = _crossover()
    after = _crossover({QWEN: {"input": "1.20", "output": "1.20"}})  # 4x the shipped $0.30/M
    assert before.break_even_utilization is not None and after.break_even_utilization is not None
    # break-even = GPU cost / (API value of what a replica serves - egress): about 1/4 of what it was
    assert after.break_even_utilization == pytest.approx(before.break_even_utilization / 4, rel=0.01)
    assert after.break_even_utilization < before.break_even_utilization / 3.9
    assert before.requests_per_day is None and before.reason.startswith("never")
    assert after.requests_per_day is not None and after.requests_per_day > 0  # now self-hosting can win


def test_a_cheaper_api_in_a_user_prices_file_pushes_break_even_up(tmp_path: Path) -> None:
    user_file = tmp_path / "prices.yaml"
    document = {"version": "test", "models": {QWEN: {"provider": "together", "input": "0.15", "output": "0.15"}}}
    user_file.write_text(yaml.safe_dump(document), encoding="utf-8")
    before, after = _crossover(), _crossover(user_file=user_file)
    assert before.break_even_utilization is not None and after.break_even_utilization is not None
    assert after.break_even_utilization == pytest.approx(before.break_even_utilization * 2, rel=0.01)


def test_the_api_cost_line_uses_the_metering_price_and_records_its_version() -> None:
    prices = load_price_catalog(overrides={QWEN: {"input": "0.60", "output": "0.60"}})
    catalog = load_catalog(prices=prices)
    api = catalog.apis["together/qwen2.5-7b-instruct-turbo"]
    assert (api.input_usd_per_mtok, api.output_usd_per_mtok) == (Decimal("0.60"), Decimal("0.60"))
    assert api.price_version.startswith("config:")
    result = plan(profile(availability={"min_replicas": 1}, candidates=A10G_ONLY), catalog)
    # 20k requests/day x 750 tokens x $0.60/M x 730/24 days: twice the $136.88 of docs/planner.md example 1
    assert cost_of(result.classes[0].scenarios[0], API).total.quantize(Decimal("0.01")) == Decimal("273.75")
