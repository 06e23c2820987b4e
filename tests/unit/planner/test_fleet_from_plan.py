"""Simulator policies from a plan's self-hosted options: throughput and price are the planner's
capacity model's, the overflow is priced at the class's API, and the policies run."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from planner_helpers import A10G_ONLY, BASE, profile

from margin.cli import main
from margin.errors import ConfigError
from margin.planner.catalog import load_catalog
from margin.planner.costing import api_cost_per_request
from margin.planner.fleet.from_plan import policies_from_plan
from margin.planner.fleet.report import compare
from margin.planner.fleet.trace import DiurnalProfile
from margin.planner.plan import plan
from margin.planner.profile import load_profile


def test_policies_carry_the_planners_capacity_and_prices() -> None:
    planned = plan(profile(candidates=A10G_ONLY), load_catalog())
    policies = policies_from_plan(planned, cold_start_min=4, max_replicas=12)
    chosen = planned.classes[0]
    hosted = {h.option.id: h for h in chosen.hosted}
    assert policies
    for fleet in policies:
        source = hosted[fleet.name]
        assert fleet.requests_per_minute_per_replica == pytest.approx(source.capacity.requests_per_s * 60)
        per_replica_hour = fleet.usd_per_gpu_hour * fleet.gpus_per_replica
        assert per_replica_hour == source.pricing.instance_usd_hr / source.pricing.replicas_per_instance
        assert fleet.target_utilization == source.pricing.target_utilization
        assert fleet.cold_start_min == 4 and fleet.max_replicas == 12
        api = chosen.api_price(f"api:{chosen.compare_to}")
        assert fleet.overflow_usd_per_request == api_cost_per_request(api, chosen.scenarios[0].demand)
    demand = DiurnalProfile(days=1, peak_rpm=40, seed=2).demand()
    comparison = compare(policies, demand)
    assert all(r.served + r.overflowed + r.rejected == r.offered for r in comparison.results)
    assert all(r.gpu_usd > Decimal(0) for r in comparison.results)


def test_an_unknown_class_is_named() -> None:
    planned = plan(profile(candidates=A10G_ONLY), load_catalog())
    with pytest.raises(ConfigError, match="no class 'absent'"):
        policies_from_plan(planned, class_name="absent")


def test_the_command_simulates_a_plans_options(tmp_path: Path) -> None:
    plan_profile = tmp_path / "profile.yaml"
    plan_profile.write_text(
        yaml.safe_dump({**BASE, "name": "chat", "requests_per_day": 20000, "candidates": A10G_ONLY})
    )
    diurnal = tmp_path / "diurnal.yaml"
    diurnal.write_text("diurnal: {days: 1, peak_rpm: 40, seed: 3}\n")
    config = tmp_path / "margin.yaml"
    config.write_text(f"data_dir: {tmp_path}\n")
    args = ["simulate", "--from-plan", str(plan_profile), "--profile", str(diurnal), "--config", str(config)]
    result = CliRunner().invoke(main, [*args, "--cold-start-min", "3", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["policies"]
    planned = plan(load_profile(plan_profile), load_catalog())
    assert [r["policy"] for r in rows] == [p.name for p in policies_from_plan(planned, cold_start_min=3)]
    both = CliRunner().invoke(main, [*args, "--policies", str(diurnal)])
    assert both.exit_code == 2 and "one of --policies FILE and --from-plan PROFILE" in both.output
