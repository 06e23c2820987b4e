"""The what-if report as an XLSX workbook with live formulas: change a price on the Assumptions
sheet and every request's cost and the lever totals move. Cached values are the report's exact
figures, so viewers that do not recalculate still show them.

Sheets: Assumptions (tier prices in USD per million tokens, TTL, quality target, the threshold) /
Requests (one row per request: cache outcome, tier, tokens; its cost on each tier as a formula) /
Levers (current, cache, router, all levers: SUMIFS over Requests; a native bar chart of the saving
per lever) / Curve (the router's threshold curve: share to the weak tier, cost, quality and its
interval, with a native line chart of quality, its lower bound and the target against the cost
share). A request whose model has no
price, or whose usage has buckets a two-price formula cannot express (cache reads, reasoning), is
carried at its recorded cost as a value.
"""

from __future__ import annotations

import io
from decimal import Decimal
from typing import Any

from xlsxwriter import Workbook

from margin.whatif.pricing import Pricer
from margin.whatif.run import Report

HEADER = ("line", "cache", "tier", "input tokens", "output tokens", "weak output tokens", "recorded cost",
          "weak cost", "cost after levers")  # fmt: skip
PRICES = {"strong_in": 1, "strong_out": 2, "weak_in": 3, "weak_out": 4}  # Assumptions rows (0-based)


def _price_rows(report: Report, pricer: Pricer) -> list[tuple[str, Decimal | None, str]]:
    strong = pricer.price_of(report.config.tiers.strong)
    weak = pricer.price_of(report.config.tiers.weak) if report.config.tiers.weak else None
    return [
        ("strong input USD/M", strong.prices.input if strong else None, report.config.tiers.strong),
        ("strong output USD/M", strong.prices.output if strong else None, report.config.tiers.strong),
        ("weak input USD/M", weak.prices.input if weak else None, report.config.tiers.weak or "-"),
        ("weak output USD/M", weak.prices.output if weak else None, report.config.tiers.weak or "-"),
    ]


def render_xlsx(report: Report) -> bytes:
    pricer = Pricer.from_overrides(report.config.prices)
    buffer = io.BytesIO()
    book = Workbook(buffer, {"in_memory": True})
    money = book.add_format({"num_format": "0.000000"})
    assumptions = book.add_worksheet("Assumptions")
    assumptions.write_row(0, 0, ("assumption", "value", "note"))
    for row, (name, value, note) in enumerate(_price_rows(report, pricer), start=1):
        assumptions.write_row(row, 0, (name, float(value) if value is not None else "unknown", note))
    extra = [
        ("cache TTL s", report.config.cache.exact.ttl_s, "from the miss that stored the entry"),
        ("quality target", report.config.routing.quality_target, "of the strong tier's quality"),
        ("router threshold", report.routing.point.threshold if report.routing else "-", "strong iff score >= it"),
    ]
    for row, values in enumerate(extra, start=5):
        assumptions.write_row(row, 0, values)
    rows = _requests(book, report, money)
    _levers(book, report, rows, money)
    if report.routing is not None:
        _curve(book, report)
    book.close()
    return buffer.getvalue()


def _requests(book: Workbook, report: Report, money: object) -> int:
    sheet = book.add_worksheet("Requests")
    sheet.write_row(0, 0, HEADER)
    weak = report.routing.routed_weak() if report.routing is not None else set()
    weak_usage = {r.index: r.weak_cost for r in report.routing.rows} if report.routing else {}
    simple = report.config.tiers.strong
    for i, record in enumerate(report.records):
        r = i + 1
        usage = record.usage
        answer = record.tiers.get(report.config.tiers.weak or "")
        weak_out = 0 if answer is None else (answer.usage or usage).output
        recorded = report.costs[i]
        sheet.write_row(r, 0, (record.line, report.cache.outcomes[i], "weak" if i in weak else "recorded",
                               usage.input_total, usage.output + usage.output_reasoning, weak_out))  # fmt: skip
        plain = record.model == simple and usage.input_cache_read == usage.input_cache_write == 0
        if recorded is None:
            sheet.write(r, 6, "unknown")
        elif plain and usage.output_reasoning == 0:
            formula = f"=(D{r + 1}*Assumptions!$B$2+E{r + 1}*Assumptions!$B$3)/1000000"
            sheet.write_formula(r, 6, formula, money, float(recorded))
        else:
            sheet.write_number(r, 6, float(recorded), money)
        if i in weak_usage:
            formula = f"=(D{r + 1}*Assumptions!$B$4+F{r + 1}*Assumptions!$B$5)/1000000"
            sheet.write_formula(r, 7, formula, money, float(weak_usage[i]))
        after = f'=IF(OR(B{r + 1}="exact",B{r + 1}="semantic"),0,IF(C{r + 1}="weak",H{r + 1},N(G{r + 1})))'
        sheet.write_formula(r, 8, after, money, _after(report, i, weak, weak_usage))
    return len(report.records)


def _after(report: Report, i: int, weak: set[int], weak_usage: dict[int, Decimal]) -> float:
    if report.cache.outcomes[i] in ("exact", "semantic"):
        return 0.0
    if i in weak:
        return float(weak_usage[i])
    return float(report.costs[i] or 0)


def _levers(book: Workbook, report: Report, rows: int, money: object) -> None:
    sheet = book.add_worksheet("Levers")
    last = rows + 1
    g, b, i = f"Requests!$G$2:$G${last}", f"Requests!$B$2:$B${last}", f"Requests!$I$2:$I${last}"
    current = float(report.current)
    cache = float(report.cache_saved)
    lines = [
        ("current (recorded)", f"=SUM({g})", current),
        ("cache saves", f'=SUMIFS({g},{b},"exact")+SUMIFS({g},{b},"semantic")', cache),
        ("router saves (after cache)", "=B2-B3-B6", float(report.routing_saved)),
        ("", "", 0.0),
        ("all levers", f"=SUM({i})", float(report.all_levers)),
        ("saved share", "=IF(B2=0,0,1-B6/B2)", float((report.current - report.all_levers) / report.current)
         if report.current else 0.0),
    ]  # fmt: skip
    sheet.write_row(0, 0, ("lever", "USD"))
    for row, (name, formula, value) in enumerate(lines, start=1):
        if name:
            sheet.write(row, 0, name)
            sheet.write_formula(row, 1, formula, money, value)
    _lever_chart(book, sheet, report)


def _lever_chart(book: Workbook, sheet: Any, report: Report) -> None:
    """Saved USD per lever (A10:B12, formulas over the totals above) and a native column chart of it."""
    sheet.write_row(8, 0, ("lever", "saved USD"))
    saved = (
        ("cache", "=B3", report.cache_saved),
        ("router (after cache)", "=B4", report.routing_saved),
        ("all levers", "=B2-B6", report.current - report.all_levers),
    )
    for row, (name, formula, value) in enumerate(saved, start=9):
        sheet.write(row, 0, name)
        sheet.write_formula(row, 1, formula, None, float(value))
    chart = book.add_chart({"type": "column"})
    chart.add_series(
        {
            "name": "saved USD",
            "categories": "=Levers!$A$10:$A$12",
            "values": "=Levers!$B$10:$B$12",
            "data_labels": {"value": True},
        }
    )
    chart.set_title({"name": "Saving per lever (USD)"})
    chart.set_legend({"none": True})
    sheet.insert_chart("D2", chart)


def _curve(book: Workbook, report: Report) -> None:
    projection = report.routing
    assert projection is not None
    sheet = book.add_worksheet("Curve")
    header = ("weak share", "threshold", "cost USD", "cost / all strong", "quality / strong", "lower bound",
              "upper bound", "target")  # fmt: skip
    sheet.write_row(0, 0, header)
    all_strong = projection.curve[0].cost
    points = list(projection.curve)
    for row, p in enumerate(points, start=1):
        threshold = p.threshold if p.threshold != float("inf") else "all weak"
        relative = float(p.cost / all_strong) if all_strong else 0.0
        sheet.write_row(row, 0, (p.weak_share, threshold, float(p.cost), relative, p.quality_ratio, p.low, p.high,
                                 projection.target))  # fmt: skip
    last = len(points) + 1
    chart = book.add_chart({"type": "scatter", "subtype": "straight_with_markers"})
    for column, name in (("D", "cost / all strong"), ("E", "quality / strong"), ("F", "lower bound"), ("H", "target")):
        chart.add_series(
            {"name": name, "categories": f"=Curve!$A$2:$A${last}", "values": f"=Curve!${column}$2:${column}${last}"}
        )
    chart.set_title({"name": "Router threshold curve"})
    chart.set_x_axis({"name": "share of misses to the weak tier", "min": 0, "max": 1, "num_format": "0%"})
    chart.set_y_axis({"name": "share of all-strong", "min": 0, "num_format": "0%"})
    sheet.insert_chart("J2", chart, {"x_scale": 1.5, "y_scale": 1.5})
