"""The fleet simulator (margin simulate): exact costs on a constant trace, cold starts overflow for
exactly their length, scale-to-zero saves GPU-hours on a diurnal trace, no request is ever lost, and
impossible input is refused with the field and line."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.charts import asset_names
from margin.cli import main
from margin.errors import ConfigError
from margin.planner.amounts import cents, to_decimal
from margin.planner.catalog import load_catalog
from margin.planner.costing import HostedPricing, schedule_for, variable_lines
from margin.planner.fleet.chart import cumulative_cost, render_html
from margin.planner.fleet.policy import FleetPolicy, load_policies
from margin.planner.fleet.report import compare
from margin.planner.fleet.simulate import simulate
from margin.planner.fleet.trace import DiurnalProfile, read_trace


def policy(**changes: object) -> FleetPolicy:
    fields: dict[str, object] = {
        "name": "p",
        "usd_per_gpu_hour": Decimal("2.50"),
        "requests_per_minute_per_replica": 60,
        "min_replicas": 0,
        "max_replicas": 10,
        "overflow_usd_per_request": Decimal("0.002"),
    }
    return FleetPolicy.model_validate(fields | changes)


def test_a_constant_trace_costs_replicas_times_hours_times_price_to_the_cent() -> None:
    demand = np.full(30 * 1440, 100, dtype=np.int64)  # 100 requests a minute for 30 days
    fixed = policy(min_replicas=3, max_replicas=3, gpus_per_replica=2)
    result = simulate(fixed, demand)
    assert result.gpu_hours == Decimal(3 * 2 * 720)
    assert result.gpu_usd == Decimal("10800.00")  # 3 replicas x 2 GPUs x 720 h x $2.50
    assert (result.served, result.overflowed, result.rejected) == (100 * len(demand), 0, 0)


def test_a_cold_start_overflows_for_exactly_its_length() -> None:
    demand = np.array([0] * 10 + [120] * 20, dtype=np.int64)
    result = simulate(policy(cold_start_min=3, scale_down_after_min=100), demand)
    # minute 10 asks for ceil(120 / (60 x 0.8)) = 3 replicas; they serve from minute 13
    assert result.overflowed == 3 * 120
    assert result.served == 17 * 120
    assert result.overflow_usd == Decimal("0.720")
    # paid while starting: 3 replicas for minutes 11..29 (decided at the end of minute 10)
    assert result.replica_minutes == 3 * 19


def test_with_a_wait_allowed_a_cold_start_is_served_late_instead_of_overflowing() -> None:
    demand = np.array([0] * 10 + [120] * 20, dtype=np.int64)
    result = simulate(policy(cold_start_min=3, scale_down_after_min=100, max_wait_min=5), demand)
    assert (result.served, result.overflowed, result.rejected) == (20 * 120, 0, 0)
    assert result.late >= 3 * 120  # minutes 10-12 wait for the replicas that serve from minute 13
    assert 1 <= result.p95_wait_min <= 3
    short = simulate(policy(cold_start_min=3, scale_down_after_min=100, max_wait_min=1), demand)
    assert short.overflowed > 0 and short.served + short.overflowed == 20 * 120


def test_a_spot_warning_as_long_as_the_cold_start_hides_interruptions() -> None:
    demand = np.full(2 * 1440, 200, dtype=np.int64)  # 4 replicas' worth at 80%, two days
    spot = {"spot_share": 1.0, "spot_usd_per_gpu_hour": Decimal("0.9"), "spot_interruptions_per_hour": 0.5}
    fields = {"min_replicas": 5, "max_replicas": 5, "cold_start_min": 2, **spot}
    unwarned = simulate(policy(**fields), demand, seed=11)
    warned = simulate(policy(**fields, spot_warning_min=2), demand, seed=11)
    assert unwarned.overflowed > 0  # each loss leaves a gap until the replacement has started
    assert warned.overflowed == 0  # the replacement starts at the notice and is up when the replica goes
    assert warned.replica_minutes > 5 * len(demand)  # the overlap is paid
    assert warned.served == int(demand.sum())


def test_without_an_overflow_tier_the_excess_is_rejected() -> None:
    demand = np.array([200, 200, 200], dtype=np.int64)
    result = simulate(policy(min_replicas=1, max_replicas=1, overflow_usd_per_request=None), demand)
    assert (result.served, result.overflowed, result.rejected) == (180, 0, 420)


def test_scale_to_zero_on_a_diurnal_trace_uses_far_fewer_gpu_hours_than_always_on_at_peak() -> None:
    # 30 days; a raised cosine from 0 to 600 requests/minute peaking at 14:00, silent 01:00-06:00,
    # Poisson noise; replicas serve 60 requests/minute at the SLA and take 5 minutes to start.
    demand = DiurnalProfile(days=30, peak_rpm=600, quiet_hours=(1, 6), seed=7).demand()
    candidates = [
        policy(name=f"s2z-{ut}", cold_start_min=5, max_replicas=20, target_utilization=ut) for ut in (0.6, 0.8)
    ]
    comparison = compare(candidates, demand)
    eligible = [r for r in comparison.results if r.overflowed <= 0.01 * r.offered]
    best = min(eligible, key=lambda r: r.gpu_hours)
    always_on = comparison.baselines[best.policy].always_on_gpu_hours
    assert best.gpu_hours <= Decimal("0.6") * always_on
    assert best.rejected == 0


@settings(max_examples=60, deadline=None)
@given(
    demand=st.lists(st.integers(0, 5000), min_size=1, max_size=300),
    rpm=st.floats(0.5, 500),
    cold=st.integers(0, 30),
    bounds=st.tuples(st.integers(0, 5), st.integers(1, 40)).filter(lambda b: b[0] <= b[1]),
    overflow=st.booleans(),
    spot=st.floats(0, 1),
    wait=st.integers(0, 10),
    warning=st.integers(0, 5),
)
def test_no_request_is_lost(
    demand: list[int],
    rpm: float,
    cold: int,
    bounds: tuple[int, int],
    overflow: bool,
    spot: float,
    wait: int,
    warning: int,
) -> None:
    low, high = bounds
    p = policy(
        requests_per_minute_per_replica=rpm,
        cold_start_min=cold,
        min_replicas=low if (overflow or low > 0) else 1,
        max_replicas=max(high, 1),
        overflow_usd_per_request=Decimal("0.001") if overflow else None,
        spot_share=spot,
        spot_usd_per_gpu_hour=Decimal("1"),
        spot_interruptions_per_hour=6.0,
        max_wait_min=wait,
        spot_warning_min=warning,
    )
    result = simulate(p, np.asarray(demand, dtype=np.int64), seed=3)
    assert result.served + result.overflowed + result.rejected == result.offered == sum(demand)
    assert min(result.served, result.overflowed, result.rejected) >= 0
    assert result.replica_minutes >= 0 and 0 <= result.late <= result.served


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"usd_per_gpu_hour": "-1"}, "usd_per_gpu_hour"),
        ({"requests_per_minute_per_replica": 0}, "requests_per_minute_per_replica"),
        ({"min_replicas": 5, "max_replicas": 2}, "min_replicas (5) > max_replicas (2)"),
        ({"overflow_usd_per_request": None}, "needs an overflow tier"),
    ],
)
def test_impossible_policies_are_refused_naming_the_field_and_line(
    tmp_path: Path, changes: dict[str, object], field: str
) -> None:
    fields = {"name": "bad", "usd_per_gpu_hour": "2", "requests_per_minute_per_replica": 10, "max_replicas": 3}
    fields |= {"min_replicas": 0, "overflow_usd_per_request": "0.01"}
    item = {k: v for k, v in (fields | changes).items() if v is not None}
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump({"policies": [{"name": "ok", **fields}, item]}, sort_keys=False))
    with pytest.raises(ConfigError, match="policies\\[1\\]") as refused:
        load_policies(path)
    assert field in refused.value.message
    assert f"{path}:" in refused.value.message


def test_a_trace_with_a_bad_line_is_refused_with_its_number(tmp_path: Path) -> None:
    path = tmp_path / "demand.csv"
    path.write_text("# minute,requests\n0,10\n1,ten\n")
    with pytest.raises(ConfigError, match=r"demand\.csv:3: expected `minute,requests`"):
        read_trace(path)
    path.write_text("0,10\n2,10\n")
    with pytest.raises(ConfigError, match=r"demand\.csv:2: minute 2 out of order"):
        read_trace(path)


def test_the_command_prints_a_table_and_json_and_refuses_bad_input(tmp_path: Path) -> None:
    policies = tmp_path / "policies.yaml"
    policies.write_text(
        "policies:\n  - name: fixed\n    usd_per_gpu_hour: '2.50'\n    requests_per_minute_per_replica: 60\n"
        "    min_replicas: 2\n    max_replicas: 2\n"
    )
    trace = tmp_path / "demand.csv"
    trace.write_text("".join(f"{m},100\n" for m in range(60)))
    runner = CliRunner()
    table = runner.invoke(main, ["simulate", "--policies", str(policies), "--trace", str(trace)])
    assert table.exit_code == 0, table.output
    assert "fixed" in table.output and "5.00" in table.output  # 2 replicas x 1 h x $2.50
    as_json = runner.invoke(main, ["simulate", "--policies", str(policies), "--trace", str(trace), "--format", "json"])
    row = json.loads(as_json.output)["policies"][0]
    assert (row["gpu_usd"], row["served"], row["api_only_usd"]) == ("5.00", 6000, None)
    page = runner.invoke(main, ["simulate", "--policies", str(policies), "--trace", str(trace), "--format", "html"])
    assert page.exit_code == 0 and page.output.count('<figure class="margin-chart"') == 3
    policies.write_text("policies:\n  - name: x\n    usd_per_gpu_hour: 0\n    max_replicas: 1\n")
    bad = runner.invoke(main, ["simulate", "--policies", str(policies), "--trace", str(trace)])
    assert bad.exit_code == 1 and "usd_per_gpu_hour" in bad.output


@pytest.mark.parametrize(("load_per_s", "capacity_per_s"), [(7.5, 2.0), (0.5, 3.0), (40.0, 1.25)])
def test_a_constant_trace_agrees_with_the_planners_steady_state_compute_cost_to_the_cent(
    load_per_s: float, capacity_per_s: float
) -> None:
    catalog = load_catalog()
    hours = to_decimal(catalog.assumptions.hours_per_month.value)
    utilization = catalog.assumptions.target_utilization.value
    gpu_hour, gpus = Decimal("2.37"), 2
    pricing = HostedPricing(
        instance_usd_hr=gpu_hour * gpus,  # one replica per instance
        price_note="on-demand",
        replicas_per_instance=1,
        min_replicas=1,
        scale_to_zero=False,
        hours_per_month=hours,
        fixed_lines=(),
        storage_usd_per_replica=Decimal(0),
        egress_usd_per_request=Decimal(0),
        target_utilization=utilization,
    )
    schedule = schedule_for((load_per_s,) * 24, capacity_per_s, pricing)
    days = hours / 24
    planner = variable_lines(pricing, schedule.instance_hours_per_day, schedule.peak, load_per_s * 86_400, days)[0]
    fleet = policy(
        usd_per_gpu_hour=gpu_hour,
        gpus_per_replica=gpus,
        requests_per_minute_per_replica=capacity_per_s * 60,
        target_utilization=utilization,
        min_replicas=1,
        max_replicas=1000,
    )
    demand = np.full(int(hours * 60), round(load_per_s * 60), dtype=np.int64)
    result = simulate(fleet, demand)
    assert cents(result.gpu_usd) == cents(planner.amount)
    assert result.peak_replicas == schedule.peak and result.overflowed == 0


def test_the_html_report_has_the_table_and_three_charts_of_the_trace(tmp_path: Path) -> None:
    demand = DiurnalProfile(days=2, peak_rpm=300, quiet_hours=(1, 6), seed=1).demand()
    candidates = [policy(name="fixed <4>", min_replicas=4, max_replicas=4), policy(name="s2z", cold_start_min=5)]
    comparison = compare(candidates, demand)
    page = render_html(comparison, demand, candidates)
    assert "fixed &lt;4&gt;" in page and " src=" not in page and "<link" not in page  # one file, nothing fetched
    assert page.count("<script>") == len(asset_names())  # the chart library travels inline
    specs = [json.loads(data) for data in re.findall(r'<script type="application/json" id="[^"]+">([^<]*)<', page)]
    assert [s["title"] for s in specs] == ["Demand", "Replicas (paid: serving or starting)",
                                           "Cumulative cost (GPU + overflow)"]  # fmt: skip
    lines = specs[1]["series"]
    assert [line["name"] for line in lines] == ["fixed <4>", "s2z"]
    assert all(len(line["points"]) == 48 for line in lines)  # 2 days, hourly
    assert [line["colour"] for line in lines] == [line["colour"] for line in specs[2]["series"]]  # same per policy
    fixed = next(r for r in comparison.results if r.policy == "fixed <4>")
    last_cost = cumulative_cost(fixed, candidates[0])[-1]
    assert round(last_cost, 2) == float(fixed.total_usd.quantize(Decimal("0.01")))
