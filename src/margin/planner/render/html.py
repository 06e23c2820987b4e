"""One self-contained HTML file: recommendations, the featured options, and three inline-SVG charts (cost vs
volume with crossovers, $/M tokens vs utilization, tier-mix savings). Opens offline: no scripts, no links
out."""

from __future__ import annotations

from decimal import Decimal
from html import escape

from margin.planner.amounts import MILLION, cents, to_decimal
from margin.planner.costing import api_cost_per_request
from margin.planner.crossover import self_cost_curve
from margin.planner.plan import ClassPlan, Plan
from margin.planner.render.featured import cost_of, crossover_text, featured_ids, provenance_lines
from margin.planner.render.svg_charts import Marker, Series, bar_chart, line_chart

CHART_FACTORS = [10 ** (k / 10) for k in range(-10, 21)]  # 0.1x .. 100x today's volume
UTILIZATIONS = [u / 100 for u in range(5, 101, 5)]
MAX_LINES = 5
STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:12px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
    "h2{border-bottom:2px solid #444}.reasons{font-size:13px;color:#444}"
)


def _hosted_ids(cp: ClassPlan) -> list[str]:
    return [i for i in featured_ids(cp) if not i.startswith("api:")][: MAX_LINES - 1]


def _cost_chart(cp: ClassPlan, plan: Plan) -> str:
    today = cp.scenarios[0].demand
    volumes = [today.requests_per_day * f for f in CHART_FACTORS]
    days = to_decimal(plan.catalog.assumptions.hours_per_month.value) / 24
    series, markers = [], []
    if cp.compare_to is not None:
        per_request = api_cost_per_request(cp.api_price(f"api:{cp.compare_to}"), today)
        series.append(
            Series(
                f"API {cp.compare_to}",
                [(v, float(per_request * to_decimal(v) * days)) for v in volumes],
                dashed=True,
            )
        )
    for option_id in _hosted_ids(cp):
        hosted = next(h for h in cp.hosted if h.option.id == option_id)
        costs = self_cost_curve(volumes, hosted.capacity, today, hosted.pricing, plan.catalog)
        series.append(Series(hosted.option.label, [(v, float(c)) for v, c in zip(volumes, costs, strict=True)]))
        cross = cp.crossover_for(option_id)
        if cross is not None and cross.requests_per_day is not None and volumes[0] <= cross.requests_per_day:
            at = self_cost_curve([cross.requests_per_day], hosted.capacity, today, hosted.pricing, plan.catalog)[0]
            markers.append(Marker(cross.requests_per_day, float(at), f"crossover {cross.requests_per_day:,.0f}/day"))
    return line_chart(f"{cp.name}: monthly cost vs volume", "requests/day (log)", "$ per month (log)", series, markers)


def _utilization_chart(cp: ClassPlan) -> str:
    today = cp.scenarios[0].demand
    tokens = to_decimal(today.input_tokens.mean + today.output_tokens.mean)
    series = []
    for option_id in _hosted_ids(cp):
        h = next(h for h in cp.hosted if h.option.id == option_id)
        per_hour = h.pricing.instance_usd_hr / h.pricing.replicas_per_instance
        full = to_decimal(h.capacity.requests_per_s * 3600) * tokens
        series.append(
            Series(
                h.option.label,
                [(u, float(per_hour / (full * to_decimal(u)) * MILLION)) for u in UTILIZATIONS],
            )
        )
    if cp.compare_to is not None:
        api = api_cost_per_request(cp.api_price(f"api:{cp.compare_to}"), today) / tokens * MILLION
        series.append(Series(f"API {cp.compare_to}", [(u, float(api)) for u in UTILIZATIONS], dashed=True))
    return line_chart(
        f"{cp.name}: GPU $/M tokens vs utilization (hidden costs excluded)",
        "utilization",
        "$ per M tokens (log)",
        series,
        log_x=False,
    )


def _savings_chart(cp: ClassPlan) -> str:
    groups = []
    for s in cp.scenarios:
        if s.hybrid is not None:
            groups.append(
                (
                    f"{s.growth:g}x",
                    [
                        ("premium API for everything", float(s.hybrid.premium_total)),
                        ("hybrid tier mix", float(s.hybrid.total)),
                    ],
                )
            )
    if not groups:
        return "<p>No tier mix in the profile (add a <code>hybrid:</code> section to price one).</p>"
    return bar_chart(f"{cp.name}: tier-mix savings", "$ per month", groups)


def _options_table(cp: ClassPlan) -> str:
    head = "".join(f"<th>{s.growth:g}x $/month</th>" for s in cp.scenarios)
    rows = []
    for option_id in featured_ids(cp):
        costs = [cost_of(s, option_id) for s in cp.scenarios]
        cells = "".join(f"<td>${cents(c.total):,}</td>" for c in costs)
        cross = crossover_text(cp.crossover_for(option_id)) if costs[0].kind != "api" else "-"
        rows.append(
            f"<tr><td>{escape(costs[0].label)}</td><td>{costs[0].kind}</td>{cells}<td>{escape(cross)}</td></tr>"
        )
    return f"<table><tr><th>option</th><th>kind</th>{head}<th>crossover</th></tr>{''.join(rows)}</table>"


def _class_html(cp: ClassPlan, plan: Plan) -> str:
    recs = []
    for s in cp.scenarios:
        r = s.recommendation
        reasons = "".join(f"<li>{escape(x)}</li>" for x in r.reasons)
        total = f" (${cents(r.monthly):,}/month)" if isinstance(r.monthly, Decimal) else ""
        recs.append(
            f"<p><b>{s.growth:g}x: {escape(r.kind or 'none')}</b>: {escape(r.label)}{total}</p>"
            f"<ul class='reasons'>{reasons}</ul>"
        )
    sens = "".join(
        f"<tr><td>{escape(r.assumption)}</td><td>{r.baseline_kind}</td>"
        f"<td>{f'x{r.down.factor:g} -> {r.down.kind}' if r.down else 'no flip to x0.25'}</td>"
        f"<td>{f'x{r.up.factor:g} -> {r.up.kind}' if r.up else 'no flip to x4'}</td></tr>"
        for r in cp.sensitivity
    )
    return (
        f"<h2>{escape(cp.name)} ({cp.kind})</h2>{''.join(recs)}{_options_table(cp)}"
        f"<h3>Charts</h3>{_cost_chart(cp, plan)}{_utilization_chart(cp)}{_savings_chart(cp)}"
        f"<h3>Sensitivity</h3><table><tr><th>assumption</th><th>today</th><th>lower</th><th>higher</th></tr>"
        f"{sens}</table>"
    )


def render_html(plan: Plan) -> str:
    p = plan.profile
    body = "".join(_class_html(cp, plan) for cp in plan.classes)
    sources = "".join(
        f"<li><b>{escape(k)}</b>: {escape(s.what)} ({escape(s.date)}; {escape(s.reliability)})</li>"
        for k, s in plan.catalog.sources.items()
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>margin plan: {escape(p.name)}</title>"
        f"<style>{STYLE}</style></head><body><h1>margin plan: {escape(p.name)}</h1>"
        f"<p>{p.requests_per_day:,.0f} requests/day; data {p.sensitivity}; ops capacity {p.ops_capacity}; "
        f"growth {', '.join(f'{g:g}x' for g in p.growth)}</p>"
        f"{''.join(f'<p>{escape(line)}</p>' for line in provenance_lines(plan))}{body}"
        f"<h2>Sources</h2><ul class='reasons'>{sources}</ul></body></html>\n"
    )
