"""Charts of the explorer and performance pages, drawn from the figures the page's tables show
(dashboard.charts: the vendored Chart.js); the tables stay the figures of record."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from margin.charts import Palette
from margin.dashboard.charts import bar_chart, time_series


def page_charts(figures: dict[str, Any]) -> str:
    if figures["page"] == "spend":
        return _spend(figures)
    if figures["page"] == "performance":
        return _performance(figures)
    return ""


def _spend(figures: dict[str, Any]) -> str:
    palette = Palette()
    groups, series = figures["tables"]["groups"], figures["tables"]["series"]
    by = figures["query"]["by"]
    bars = [(str(row[0]), Decimal(row[5])) for row in groups["rows"][:10]]
    columns: Sequence[str] = series["columns"][1:]
    lines = {name: [Decimal(row[i + 1]) for row in series["rows"]] for i, name in enumerate(columns)}
    period = series["columns"][0]
    times = [row[0][:13].replace("T", " ") if period == "hour" else row[0][:10] for row in series["rows"]]
    return bar_chart(f"Spend by {by}", bars, chart_id="chart-spend-groups", palette=palette) + time_series(
        f"Spend per {period}", times, lines, chart_id="chart-spend-series", palette=palette
    )


def _performance(figures: dict[str, Any]) -> str:
    rows = figures["tables"]["series"]["rows"]
    times = sorted({row[0] for row in rows})
    names = sorted({row[1] for row in rows})
    at = {(row[0], row[1]): row[4] for row in rows}
    lines = {name: [at.get((t, name)) for t in times] for name in names}
    rates = {(row[0], row[1]): row[6] for row in rows}
    throughput = {name: [rates.get((t, name)) for t in times] for name in names}
    labels = [t[:16].replace("T", " ") for t in times]
    palette = Palette()
    return time_series(
        "Latency p95 (ms)", labels, lines, unit="", chart_id="chart-latency-p95", log=True, palette=palette
    ) + time_series("Tokens/s", labels, throughput, unit="", chart_id="chart-tokens-per-s", palette=palette)
