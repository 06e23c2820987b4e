"""One self-contained HTML file: recommendations, the featured options, and three charts per class
(cost vs volume with today's demand and the crossovers, $/M tokens vs utilisation, tier-mix savings;
chart_specs.py) drawn by Chart.js, which the file carries inline with its licence banner. Opens
offline: no request leaves the file."""

from __future__ import annotations

from decimal import Decimal
from html import escape

from margin.charts import Palette, chart_html, inline_scripts
from margin.planner.amounts import cents
from margin.planner.plan import ClassPlan, Plan
from margin.planner.render.chart_specs import cost_chart, plan_palette, savings_chart, utilisation_chart
from margin.planner.render.featured import cost_of, crossover_text, featured_ids, provenance_lines

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;font-size:12px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}"
    "h2{border-bottom:2px solid #444}.reasons{font-size:13px;color:#444}"
)


def _charts(cp: ClassPlan, plan: Plan, palette: Palette) -> str:
    slug = f"class-{plan.classes.index(cp)}"
    parts = [
        chart_html(cost_chart(cp, plan, palette), f"{slug}-cost"),
        chart_html(utilisation_chart(cp, palette), f"{slug}-utilisation"),
    ]
    savings = savings_chart(cp, palette)
    parts.append(
        chart_html(savings, f"{slug}-savings")
        if savings is not None
        else "<p>No tier mix in the profile (add a <code>hybrid:</code> section to price one).</p>"
    )
    return "".join(parts)


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


def _class_html(cp: ClassPlan, plan: Plan, palette: Palette) -> str:
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
        f"<h3>Charts</h3>{_charts(cp, plan, palette)}"
        f"<h3>Sensitivity</h3><table><tr><th>assumption</th><th>today</th><th>lower</th><th>higher</th></tr>"
        f"{sens}</table>"
    )


def render_html(plan: Plan) -> str:
    p = plan.profile
    palette = plan_palette(plan)
    body = "".join(_class_html(cp, plan, palette) for cp in plan.classes)
    sources = "".join(
        f"<li><b>{escape(k)}</b>: {escape(s.what)} ({escape(s.date)}; {escape(s.reliability)})</li>"
        for k, s in plan.catalog.sources.items()
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>margin plan: {escape(p.name)}</title>"
        f"<style>{STYLE}</style>{inline_scripts()}</head><body><h1>margin plan: {escape(p.name)}</h1>"
        f"<p>{p.requests_per_day:,.0f} requests/day; data {p.sensitivity}; ops capacity {p.ops_capacity}; "
        f"growth {', '.join(f'{g:g}x' for g in p.growth)}</p>"
        f"{''.join(f'<p>{escape(line)}</p>' for line in provenance_lines(plan))}{body}"
        f"<h2>Sources</h2><ul class='reasons'>{sources}</ul></body></html>\n"
    )
