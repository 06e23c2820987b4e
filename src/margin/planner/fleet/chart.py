"""`margin simulate --format html`: the comparison table and three charts (demand, replicas,
cumulative cost) per hour of the trace, drawn by the Chart.js the file carries inline (margin.charts):
one file, no external assets, one colour per policy. Chart coordinates are floats (presentation
only); the table prints the Decimal amounts."""

from __future__ import annotations

from html import escape

import numpy as np

from margin.charts import Axis, Palette, Series, chart_html, inline_scripts, line_chart
from margin.planner.fleet.policy import FleetPolicy
from margin.planner.fleet.report import COLUMNS, Comparison, as_json
from margin.planner.fleet.simulate import PolicyResult
from margin.planner.fleet.trace import Demand
from margin.planner.render.html import STYLE

MINUTES_PER_HOUR = 60


def _hourly(values: np.ndarray, how: str) -> list[float]:
    """Per-hour mean or max of a per-minute series (a last partial hour included)."""
    hours = -(-len(values) // MINUTES_PER_HOUR)
    padded = np.zeros(hours * MINUTES_PER_HOUR, dtype=np.float64)
    padded[: len(values)] = values
    grid = padded.reshape(hours, MINUTES_PER_HOUR)
    return [float(v) for v in (grid.max(axis=1) if how == "max" else grid.mean(axis=1))]


def _points(values: list[float]) -> list[tuple[float, float]]:
    return [(float(hour), value) for hour, value in enumerate(values)]


def cumulative_cost(result: PolicyResult, policy: FleetPolicy) -> list[float]:
    """Dollars spent by the end of each hour: paid replica-minutes plus overflowed requests."""
    overflow = float(policy.overflow_usd_per_request or 0)
    spend = result.replicas * float(policy.usd_per_replica_minute()) + result.gave_up * overflow
    cumulative = np.cumsum(spend)
    hours = -(-len(cumulative) // MINUTES_PER_HOUR)
    return [float(cumulative[min(len(cumulative), (h + 1) * MINUTES_PER_HOUR) - 1]) for h in range(hours)]


def render_html(comparison: Comparison, demand: Demand, policies: list[FleetPolicy]) -> str:
    by_name = {p.name: p for p in policies}
    palette = Palette(["demand", *(r.policy for r in comparison.results)])  # a policy's colour in every chart
    hour = Axis("hour", "linear", "number", min=0)
    charts = [
        line_chart(
            "Demand",
            hour,
            Axis("requests/minute (hourly mean)", min=0),
            [Series("demand", palette["demand"], points=_points(_hourly(demand, "mean")))],
        ),
        line_chart(
            "Replicas (paid: serving or starting)",
            hour,
            Axis("replicas (hourly max)", min=0),
            [
                Series(r.policy, palette[r.policy], points=_points(_hourly(r.replicas, "max")))
                for r in comparison.results
            ],
        ),
        line_chart(
            "Cumulative cost (GPU + overflow)",
            hour,
            Axis("USD", format="usd", min=0),
            [
                Series(r.policy, palette[r.policy], points=_points(cumulative_cost(r, by_name[r.policy])))
                for r in comparison.results
            ],
        ),
    ]
    shown = "".join(chart_html(spec, f"chart-{i}") for i, spec in enumerate(charts))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>margin simulate</title>"
        f"<style>{STYLE}</style>{inline_scripts()}</head><body><h1>margin simulate</h1>"
        f"<p>{comparison.minutes:,} minutes of demand, {int(demand.sum()):,} requests.</p>"
        f"{_table(comparison)}{shown}</body></html>\n"
    )


def _table(comparison: Comparison) -> str:
    head = "".join(f"<th>{escape(title)}</th>" for _, title in COLUMNS)
    rows = []
    for row in as_json(comparison)["policies"]:
        cells = "".join(f"<td>{escape('-' if row[key] is None else str(row[key]))}</td>" for key, _ in COLUMNS)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"
