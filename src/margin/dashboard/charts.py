"""The dashboard's charts, drawn by the vendored Chart.js (margin.charts) from a JSON spec beside a
canvas. The scripts come from the dashboard's own static route (`STATIC_PREFIX`), never a CDN; a page
built with `pages.document` gets the script tags whenever its body holds a chart. Pass one
`Palette` to every chart of a page so a team, model or deployment keeps its colour on it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from html import escape

from margin.charts import Axis, Palette, Series, chart_html, line_chart, script_tags
from margin.charts import bar_chart as bar_spec
from margin.charts.spec import Format

STATIC_PREFIX = "/dashboard/static"
CHART_MARKER = "data-chart-spec="  # what `pages.document` looks for to add the scripts
UNITS: dict[str, Format] = {"$": "usd", "": "number", "%": "percent"}


def page_scripts() -> str:
    """The `<script src>` tags a page with charts needs (pages.document adds them itself)."""
    return script_tags(STATIC_PREFIX)


def bar_chart(
    title: str,
    bars: Sequence[tuple[str, Decimal | float | int]],
    unit: str = "$",
    *,
    chart_id: str | None = None,
    palette: Palette | None = None,
    value_label: str = "",
) -> str:
    """Horizontal bars ranked as given (e.g. top teams by spend). `unit`: "$", "%" (a 0-1 ratio) or
    "" (a count)."""
    if not bars:
        return f'<p class="empty">{escape(title)}: nothing yet this period.</p>'
    colour = (palette or Palette())[title]
    series = [Series(value_label or title, colour, values=[float(v) for _, v in bars])]
    axis = Axis(value_label, format=UNITS.get(unit, "number"), min=0, max=1 if unit == "%" else None)
    spec = bar_spec(title, [label for label, _ in bars], series, axis, horizontal=True)
    return chart_html(spec, chart_id or _slug(title))


def time_series(
    title: str,
    times: Sequence[str],
    series: Mapping[str, Sequence[Decimal | float | int | None]],
    *,
    unit: str = "$",
    y_label: str = "",
    chart_id: str | None = None,
    palette: Palette | None = None,
    log: bool = False,
) -> str:
    """One line per name over the labelled times (hours or days, oldest first); None leaves a gap.
    Every name is in the legend; clicking one hides its line."""
    if not times or not series:
        return f'<p class="empty">{escape(title)}: nothing yet in this range.</p>'
    colours = palette or Palette()
    lines = [
        Series(name, colours[name], values=[None if v is None else float(v) for v in values])
        for name, values in series.items()
    ]
    y = Axis(y_label, "log" if log else "linear", UNITS.get(unit, "number"), min=None if log else 0)
    spec = line_chart(title, Axis("", "category", "text"), y, lines, categories=list(times))
    return chart_html(spec, chart_id or _slug(title))


def _slug(title: str) -> str:
    return "chart-" + (re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "untitled")
