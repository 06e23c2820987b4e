"""Renders an Evaluation as a plain-text table (stdout) and a self-contained HTML page whose two charts
(report_charts.py) are drawn by the Chart.js that margin.charts inlines: the page opens offline."""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from margin.charts import chart_html, inline_scripts
from margin.routing.learned.evaluation import CurveSummary, Evaluation
from margin.routing.learned.report_charts import cost_chart, report_palette, share_chart

CURVE_SHARES: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.0, 11), 2))


def summary_rows(evaluation: Evaluation) -> list[tuple[str, str, str]]:
    """(metric, router, random) rows shared by the text and HTML renderings."""
    ours, rnd = evaluation.router_summary, evaluation.random_summary
    full = evaluation.strong_only_cost

    def money(value: float) -> str:
        return f"${value:,.2f} ({value / full:.0%})" if full > 0 else f"${value:,.2f}"

    def both(metric: str, pick: str) -> tuple[str, str, str]:
        a, b = getattr(ours, pick), getattr(rnd, pick)
        if pick.startswith("cost"):
            return metric, money(a), money(b)
        if pick == "apgr":
            return metric, f"{a:.3f}", f"{b:.3f}"
        return metric, f"{a:.1%}", f"{b:.1%}"

    return [
        both("APGR", "apgr"),
        both("CPT(50%) strong-call share", "cpt50"),
        both("CPT(80%) strong-call share", "cpt80"),
        both("strong share for 95% of strong quality", "share_at_95"),
        both("strong-call reduction at 95% quality", "strong_call_reduction_at_95"),
        both("cost at CPT(50%)", "cost_at_cpt50"),
        both("cost at CPT(80%)", "cost_at_cpt80"),
        both("cost at 95% quality", "cost_at_95"),
    ]


def curve_rows(evaluation: Evaluation) -> list[tuple[str, str, str, str, str]]:
    """(strong share, quality, PGR, random PGR, cost) at 0%, 10%, ... 100% strong calls."""
    curve, random_pgr = evaluation.router, evaluation.random.pgr
    rows = []
    for share in CURVE_SHARES:
        pgr = float(np.interp(share, curve.strong_share, curve.pgr))
        rnd = float(np.interp(share, evaluation.random.strong_share, random_pgr))
        cost = float(np.interp(share, curve.strong_share, curve.cost))
        quality = evaluation.quality_at_share(share)
        rows.append((f"{share:.0%}", f"{quality:.3f}", f"{pgr:.3f}", f"{rnd:.3f}", f"${cost:,.2f}"))
    return rows


def render_text(evaluation: Evaluation, title: str) -> str:
    header = (
        f"{title}: {evaluation.rows} prompts, weak-only quality {evaluation.weak_quality:.3f}, "
        f"strong-only {evaluation.strong_quality:.3f}, always-strong cost ${evaluation.strong_only_cost:,.2f}"
    )
    lines = [header, "", _table(("metric", "router", "random"), summary_rows(evaluation)), ""]
    lines.append(_table(("strong share", "quality", "PGR", "random PGR", "cost"), curve_rows(evaluation)))
    return "\n".join(lines)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def render_html(evaluation: Evaluation, title: str) -> str:
    """A single page with no external assets: summary table, two charts and the curve table."""
    palette = report_palette()
    charts = chart_html(share_chart(evaluation, palette), "pgr-share") + chart_html(
        cost_chart(evaluation, palette), "pgr-cost"
    )
    esc = html.escape
    return _PAGE.format(
        title=esc(title),
        scripts=inline_scripts(),
        header=esc(render_text(evaluation, title).splitlines()[0]),
        summary=_html_table(("metric", "router", "random"), summary_rows(evaluation)),
        curve=_html_table(("strong share", "quality", "PGR", "random PGR", "cost"), curve_rows(evaluation)),
        charts=charts,
    )


def _html_table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def summary_dict(summary: CurveSummary) -> dict[str, float]:
    """Machine-readable summary (for --json output and benchmarks)."""
    return {
        "apgr": summary.apgr,
        "cpt50": summary.cpt50,
        "cpt80": summary.cpt80,
        "share_at_95": summary.share_at_95,
        "strong_call_reduction_at_95": summary.strong_call_reduction_at_95,
        "cost_at_cpt50": summary.cost_at_cpt50,
        "cost_at_cpt80": summary.cost_at_cpt80,
        "cost_at_95": summary.cost_at_95,
    }


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; max-width: 60rem; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .3rem .8rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
</style>{scripts}</head><body>
<h1>{title}</h1>
<p>{header}</p>
{summary}
{charts}
<h2>Curve</h2>
{curve}
<p>PGR = (quality - weak-only) / (strong-only - weak-only); APGR = area under PGR over the strong-call
share; CPT(x) = smallest strong-call share reaching PGR x. Random = routing a random subset. Each line
is marked at its CPT(50%), CPT(80%) and the share reaching 95% of strong-only quality; a click on a
legend entry hides or shows that line and its marks.</p>
</body></html>
"""
