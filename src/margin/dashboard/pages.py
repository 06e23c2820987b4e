"""The HTML of the login form and the Overview page. Every figure shown carries
`data-figure="<path in the JSON twin>"`, so a test (and a browser test) can compare the two. Nothing
here loads from outside the page: styles are inline and charts are drawn by the vendored Chart.js,
served by the dashboard itself (charts.py)."""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Any

from margin.dashboard.charts import CHART_MARKER, bar_chart, page_scripts

# Inline styles; scripts only from the dashboard's own static route (the vendored Chart.js and its
# renderer); chart data sits in JSON blocks, which are never executed.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1d2433;background:#f7f8fa}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;background:#fff}
td,th{padding:.35rem .8rem;border-bottom:1px solid #e3e6ec;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{background:#fff;border:1px solid #e3e6ec;border-radius:6px;padding:.8rem 1rem;min-width:12rem}
.card b{display:block;font-size:1.3rem}.warn{color:#a4161a}form.inline{display:inline}
"""


def document(title: str, body: str) -> str:
    """A page; one whose body holds a chart (dashboard.charts) also loads the chart scripts."""
    scripts = page_scripts() if CHART_MARKER in body else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · margin</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">'
        f"<style>{STYLE}</style>{scripts}</head><body>{body}</body></html>"
    )


def login_page(csrf: str, error: str | None = None) -> str:
    problem = f'<p class="warn" role="alert">{escape(error)}</p>' if error else ""
    return document(
        "Log in",
        f"<h1>margin dashboard</h1>{problem}"
        '<form method="post" action="/dashboard/login">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        '<label>Admin key <input type="password" name="admin_key" autocomplete="current-password" required></label> '
        '<button type="submit">Log in</button></form>',
    )


def _figure(path: str, value: Any, prefix: str = "") -> str:
    shown = "n/a" if value is None else f"{prefix}{value}"
    return f'<span data-figure="{escape(path)}">{escape(shown)}</span>'


def _card(label: str, path: str, value: Any, prefix: str = "") -> str:
    return f'<div class="card">{escape(label)}<b>{_figure(path, value, prefix)}</b></div>'


def overview_page(figures: dict[str, Any], csrf: str) -> str:
    spend, saved = figures["spend"], figures["saved"]
    share = figures["cheapest_cost_rank_share"]
    warning = '<p class="warn">The forecast passes the monthly budget.</p>' if spend["forecast_over_budget"] else ""
    cards = "".join([
        _card("Spent this month", "spend.spent_usd", spend["spent_usd"], "$"),
        _card("Monthly budget", "spend.budget_usd", spend["budget_usd"], "$"),
        _card("Budget used", "spend.budget_used", spend["budget_used"]),
        _card("Burn per day", "spend.burn_usd_per_day", spend["burn_usd_per_day"], "$"),
        _card("Forecast to month end", "spend.forecast_usd", spend["forecast_usd"], "$"),
        _card("Requests", "requests.total", figures["requests"]["total"]),
        _card("Cost per request", "cost_per_request_usd", figures["cost_per_request_usd"], "$"),
        _card("Cost per successful request", "cost_per_successful_request_usd",
              figures["cost_per_successful_request_usd"], "$"),
        _card("Saved by the cache", "saved.cache_usd", saved["cache_usd"], "$"),
        _card("Saved by routing (vs all-premium)", "saved.routing_usd", saved["routing_usd"], "$"),
    ])  # fmt: skip
    if figures["scope"]["team"] is None:  # per-team cost-rank splits are not in the rollups
        cards += _card("Share at the cheapest cost rank", "cheapest_cost_rank_share.share", share and share["share"])
    tops = "".join(_top_section(by, lines) for by, lines in figures["top"].items())
    period = figures["period"]
    return document(
        "Overview",
        '<form class="inline" method="post" action="/dashboard/logout">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}"><button type="submit">Log out</button></form>'
        f"<h1>Overview{_scope(figures['scope'])}</h1>"
        f"<p>{escape(period['start'][:10])} to {escape(period['end'][:10])} (UTC), "
        f'JSON: <a href="/admin/api/overview">/admin/api/overview</a></p>{warning}'
        f'<div class="cards">{cards}</div>{tops}',
    )


def _scope(scope: dict[str, str | None]) -> str:
    """The viewer's team or org (nothing for the admin), as a figure of the twin."""
    for kind in ("team", "org"):
        name = scope.get(kind)
        if name is not None:
            return f' · {kind} <span data-figure="scope.{kind}">{escape(name)}</span>'
    return ""


def _top_section(by: str, lines: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td data-figure="top.{by}.{i}.group">{escape(line["group"])}</td>'
        f'<td class="n">{_figure(f"top.{by}.{i}.spend_usd", line["spend_usd"], "$")}</td>'
        f'<td class="n">{_figure(f"top.{by}.{i}.requests", line["requests"])}</td></tr>'
        for i, line in enumerate(lines)
    )
    bars = [(line["group"], Decimal(line["spend_usd"])) for line in lines]
    chart = bar_chart(f"Spend by {by}", bars, chart_id=f"chart-top-{by}", value_label="$ this month")
    return (
        f"<h2>Top {by}s</h2>{chart}<table><thead><tr><th>{by}</th><th>spend</th><th>requests</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
