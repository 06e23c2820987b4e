"""The what-if report as one HTML page that opens offline: the lever table, and the router's
threshold curve (cost and quality with its interval against the share sent to the weak tier) drawn
with margin's vendored charts, the operating point marked."""

from __future__ import annotations

from decimal import Decimal
from html import escape

from margin.charts import COLOURS, Axis, Marker, Series, chart_html, inline_scripts, line_chart
from margin.whatif.report import CENT, NOT_BUILT, sampling_lines, selfhost_lines
from margin.whatif.routing import RoutingProjection
from margin.whatif.run import Report

STYLE = (
    "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}"
)


def _row(name: str, cost: Decimal, current: Decimal, note: str) -> str:
    saved = current - cost
    share = f"{saved / current:.1%}" if current else "-"
    return (
        f"<tr><td>{escape(name)}</td><td>{cost.quantize(CENT)}</td><td>{saved.quantize(CENT)}</td>"
        f"<td>{share}</td><td style='text-align:left'>{escape(note)}</td></tr>"
    )


def _levers(report: Report) -> str:
    current = report.current
    cache = report.cache
    rows = [
        _row("current (recorded)", current, current, f"{len(report.records)} requests"),
        _row("cache", current - report.cache_saved, current, f"{cache.count('exact')} exact + "
             f"{cache.count('semantic')} semantic hits"),
    ]  # fmt: skip
    if report.routing is not None:
        point = report.routing.point
        note = f"{point.weak_share:.1%} of misses to the weak tier, threshold {point.threshold:.4f}"
        alone = current - report.routing.alone_saved
        rows.append(_row("router alone (no cache)", alone, current, "the same threshold on every graded request"))
        rows.append(_row("router (after cache)", current - report.routing_saved, current, note))
    rows.append(_row("all levers", report.all_levers, current, ""))
    head = "<tr><th>lever</th><th>cost USD</th><th>saved USD</th><th>saved</th><th>note</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _curve(projection: RoutingProjection) -> str:
    all_strong = projection.curve[0].cost or Decimal(1)
    share = Axis("share of misses sent to the weak tier", format="percent", min=0, max=1)
    cost = Series(
        "cost / all strong", COLOURS[0], [(p.weak_share, float(p.cost / all_strong)) for p in projection.curve]
    )
    quality = Series("quality / strong", COLOURS[1], [(p.weak_share, p.quality_ratio) for p in projection.curve])
    low = Series("quality lower bound", COLOURS[1], [(p.weak_share, p.low) for p in projection.curve], dashed=True)
    point = projection.point
    marker = Marker("operating-point", "point", f"operating point ({point.weak_share:.1%})", point.weak_share,
                    point.quality_ratio)  # fmt: skip
    target = Series("target", COLOURS[2], [(0.0, projection.target), (1.0, projection.target)], dashed=True)
    spec = line_chart(
        "Router threshold curve", share, Axis("share", format="percent", min=0), [cost, quality, low, target], [marker]
    )
    return chart_html(spec, "whatif-curve")


def _sampling(report: Report) -> str:
    parts = []
    for title, lines in (("Live sample", sampling_lines(report.sampling)), ("Self-hosting", selfhost_lines(report))):
        if lines:
            parts.append(f"<h2>{title}</h2>" + "".join(f"<p>{escape(line)}</p>" for line in lines))
    return "".join(parts)


def render_html(report: Report) -> str:
    routing = report.routing
    quality = ""
    if routing is not None:
        p = routing.point
        quality = (
            f"<p>Quality at the operating point: {p.quality_ratio:.1%} of the strong tier's "
            f"(lower bound {p.low:.1%} at {routing.confidence:.0%} confidence, upper {p.high:.1%}); "
            f"target {routing.target:.0%}.</p>{_curve(routing)}"
        )
    issues = "".join(f"<li>{escape(i)}</li>" for i in report.issues[:200])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>margin whatif</title><style>{STYLE}</style>"
        f"{inline_scripts()}</head><body><h1>margin whatif</h1>{_levers(report)}"
        f"<p>Routing: {escape(report.routing_note)}</p>{quality}"
        f"{_sampling(report)}<h2>Limits</h2><p>{escape(NOT_BUILT)}</p><h2>Issues</h2><ul>{issues}</ul></body></html>\n"
    )
