"""The HTML report's charts as data (margin.charts specs, drawn by the vendored Chart.js): cost vs
volume with today's demand and every crossover marked, GPU $/M tokens vs utilisation with the
break-even points, and the tier mix against premium-for-everything. Every option the report's table
lists is plotted (its legend entry hides or shows it), each in the one colour the plan's palette
gives its name in every chart. Chart coordinates are floats (presentation only); the tables print
the Decimal amounts."""

from __future__ import annotations

import math
from decimal import Decimal

from margin.charts import Axis, ChartSpec, Marker, Palette, Series, bar_chart, line_chart
from margin.planner.amounts import MILLION, to_decimal
from margin.planner.costing import api_cost_per_request
from margin.planner.crossover import self_cost_curve
from margin.planner.evaluate import PreparedHosted
from margin.planner.plan import ClassPlan, Plan
from margin.planner.render.featured import cost_of, featured_ids

STEPS_PER_DECADE = 10
LOWEST_FACTOR, HIGHEST_FACTOR, FARTHEST_FACTOR = 0.1, 100.0, 10_000.0  # volume as a multiple of today's
UTILISATIONS = [u / 100 for u in range(5, 101, 5)]
TODAY_COLOUR = "#1d2433"
PREMIUM, HYBRID = "premium API for everything", "hybrid tier mix"


def plan_palette(plan: Plan) -> Palette:
    """One colour per option label across the whole report, in the order the tables list them."""
    return Palette(label for cp in plan.classes for label in option_labels(cp).values())


def option_labels(cp: ClassPlan) -> dict[str, str]:
    """The report's options for a class, id -> label, in table order."""
    first = cp.scenarios[0]
    return {option_id: cost_of(first, option_id).label for option_id in featured_ids(cp)}


def _hosted(cp: ClassPlan, option_id: str) -> PreparedHosted | None:
    return next((h for h in cp.hosted if h.option.id == option_id), None)


def _factors(cp: ClassPlan) -> list[float]:
    """0.1x to 100x today's volume, stretched (up to 10,000x) to reach the farthest crossover."""
    today = cp.scenarios[0].demand.requests_per_day
    crossings = [c.requests_per_day / today for c in cp.crossovers if c.requests_per_day is not None and today > 0]
    high = min(FARTHEST_FACTOR, max([HIGHEST_FACTOR, *(c * 1.5 for c in crossings)]))
    count = math.ceil(math.log10(high / LOWEST_FACTOR) * STEPS_PER_DECADE)
    return [LOWEST_FACTOR * (high / LOWEST_FACTOR) ** (k / count) for k in range(count + 1)]


def cost_chart(cp: ClassPlan, plan: Plan, palette: Palette) -> ChartSpec:
    today = cp.scenarios[0].demand
    volumes = [today.requests_per_day * f for f in _factors(cp)]
    days = to_decimal(plan.catalog.assumptions.hours_per_month.value) / 24
    series, markers = [], [_today_marker(today.requests_per_day)]
    first = _first_crossover(cp)
    for option_id, label in option_labels(cp).items():
        hosted = _hosted(cp, option_id)
        if hosted is None:
            per_request = api_cost_per_request(cp.api_price(option_id), today)
            points = [(v, float(per_request * to_decimal(v) * days)) for v in volumes]
            series.append(Series(label, palette[label], points=points, dashed=True))
            continue
        costs = self_cost_curve(volumes, hosted.capacity, today, hosted.pricing, plan.catalog)
        points = [(v, float(c)) for v, c in zip(volumes, costs, strict=True)]
        series.append(Series(label, palette[label], points=points))
        markers += _crossover_marker(cp, hosted, label, palette[label], plan, labelled=option_id == first)
    return line_chart(
        f"{cp.name}: monthly cost vs volume (every option; click a legend entry to hide or show it)",
        Axis("requests/day (log)", "log", "number", min=volumes[0], max=volumes[-1]),
        Axis("$ per month (log)", "log", "usd"),
        series,
        markers,
        height=560,
    )


def _today_marker(requests_per_day: float) -> Marker:
    text = f"today: {requests_per_day:,.0f} requests/day"
    return Marker("today", "today", text, requests_per_day, colour=TODAY_COLOUR)


def _first_crossover(cp: ClassPlan) -> str | None:
    """The option that pays first: the only crossover labelled (the table lists every one)."""
    shown = set(featured_ids(cp))
    crossings = [c for c in cp.crossovers if c.requests_per_day is not None and c.option_id in shown]
    return min(crossings, key=lambda c: c.requests_per_day or 0).option_id if crossings else None


def _crossover_marker(
    cp: ClassPlan, hosted: PreparedHosted, series: str, colour: str, plan: Plan, labelled: bool
) -> list[Marker]:
    """A point where the option (`series`: its label) costs as much as the comparison API; the first
    crossover of the chart is `labelled`."""
    cross = cp.crossover_for(hosted.option.id)
    if cross is None or cross.requests_per_day is None:
        return []
    at = self_cost_curve([cross.requests_per_day], hosted.capacity, cp.scenarios[0].demand, hosted.pricing,
                         plan.catalog)[0]  # fmt: skip
    text = f"first crossover: {cross.requests_per_day:,.0f} requests/day\n{series}" if labelled else ""
    marker_id = f"crossover:{hosted.option.id}"
    return [Marker(marker_id, "crossover", text, cross.requests_per_day, float(at), colour, series)]


def utilisation_chart(cp: ClassPlan, palette: Palette) -> ChartSpec:
    """GPU $/M tokens of each hosted option as its replicas' utilisation goes from 5% to 100% (hidden
    costs excluded), each API as its flat $/M; a point where a hosted line meets the comparison API
    (its break-even utilisation)."""
    today = cp.scenarios[0].demand
    tokens = to_decimal(today.input_tokens.mean + today.output_tokens.mean)
    series, markers = [], []
    compare = f"api:{cp.compare_to}" if cp.compare_to is not None else None
    compare_per_m = api_cost_per_request(cp.api_price(compare), today) / tokens * MILLION if compare else None
    for option_id, label in option_labels(cp).items():
        hosted = _hosted(cp, option_id)
        if hosted is None:
            per_m = float(api_cost_per_request(cp.api_price(option_id), today) / tokens * MILLION)
            series.append(Series(label, palette[label], points=[(u, per_m) for u in UTILISATIONS], dashed=True))
            continue
        per_hour = hosted.pricing.instance_usd_hr / hosted.pricing.replicas_per_instance
        full = to_decimal(hosted.capacity.requests_per_s * 3600) * tokens
        points = [(u, float(per_hour / (full * to_decimal(u)) * MILLION)) for u in UTILISATIONS]
        series.append(Series(label, palette[label], points=points))
        cross = cp.crossover_for(option_id)
        at = cross.break_even_utilization if cross is not None else None
        if compare_per_m is not None and at is not None and 0 < at <= 1:
            markers.append(_break_even(option_id, label, at, compare_per_m, palette))
    return line_chart(
        f"{cp.name}: GPU $/M tokens vs utilisation (hidden costs excluded)",
        Axis("replica utilisation", "linear", "percent", min=0, max=1, step=0.1),
        Axis("$ per M tokens (log)", "log", "usd"),
        series,
        markers,
        height=520,
    )


def _break_even(option_id: str, label: str, utilisation: float, per_m: Decimal, palette: Palette) -> Marker:
    return Marker(f"break-even:{option_id}", "crossover", "", utilisation, float(per_m), palette[label], label)


def savings_chart(cp: ClassPlan, palette: Palette) -> ChartSpec | None:
    """Premium-for-everything against the hybrid tier mix at each growth scenario (None: no mix)."""
    priced = [(f"{s.growth:g}x", s.hybrid) for s in cp.scenarios if s.hybrid is not None]
    if not priced:
        return None
    return bar_chart(
        f"{cp.name}: tier-mix savings",
        [growth for growth, _ in priced],
        [
            Series(PREMIUM, palette[PREMIUM], values=[float(h.premium_total) for _, h in priced]),
            Series(HYBRID, palette[HYBRID], values=[float(h.total) for _, h in priced]),
        ],
        Axis("$ per month", format="usd", min=0),
        category_label="growth scenario",
    )
