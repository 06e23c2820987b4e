"""Render a SpendReport as a terminal table, CSV (exact money), JSON or an XLSX workbook.

The default table keeps to 120 columns: the columns an operator reads first (requests, what was
served, what margin's limits refused, spend, cache, latency); `wide` shows every column, and
CSV, JSON and XLSX always carry everything.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal

from margin.ledger.report import Percentiles, SpendLine, SpendReport, flat_records, report_to_json

ReportFormat = Literal["table", "csv", "json", "xlsx"]
FORMATS: tuple[ReportFormat, ...] = ("table", "csv", "json", "xlsx")
TABLE_WIDTH = 120
_DISPLAY_QUANTUM = Decimal("0.000001")  # display only: stored and JSON/CSV amounts stay exact
_MIN_GROUP_WIDTH = 12
COMPACT_FOOTNOTE = "402/429: refused by margin's budgets / rate limits. Every column: --wide, or --format csv|json|xlsx"
Column = tuple[str, Callable[[SpendLine], str]]


def _usd(value: Decimal | None) -> str:
    return "-" if value is None else f"${value.quantize(_DISPLAY_QUANTUM, ROUND_HALF_EVEN):,f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ms(values: Percentiles, quantiles: tuple[str, ...] = ("p50", "p95", "p99")) -> str:
    return "/".join("-" if v is None else f"{v:.0f}" for v in (getattr(values, q) for q in quantiles))


REQUESTS: tuple[Column, ...] = (
    ("requests", lambda x: f"{x.requests:,}"),
    ("ok", lambda x: f"{x.successful:,}"),
    ("402 budget", lambda x: f"{x.refused_budget:,}"),
    ("429 limit", lambda x: f"{x.refused_rate_limit:,}"),
)
# The default table, most important first: columns are dropped from the end to keep to TABLE_WIDTH.
COMPACT_COLUMNS: tuple[Column, ...] = (
    *REQUESTS,
    ("spend", lambda x: _usd(x.spend)),
    ("per ok req", lambda x: _usd(x.cost_per_successful_request)),
    ("cache hits", lambda x: f"{x.cache_hits:,}"),
    ("latency ms p50/95", lambda x: _ms(x.latency_ms, ("p50", "p95"))),
)
TABLE_COLUMNS: tuple[Column, ...] = (
    *REQUESTS,
    ("attempts", lambda x: f"{x.attempts:,}"),
    ("spend", lambda x: _usd(x.spend)),
    ("per 1k req", lambda x: _usd(x.cost_per_1k_requests)),
    ("per ok req", lambda x: _usd(x.cost_per_successful_request)),
    ("req share", lambda x: _pct(x.request_share)),
    ("spend share", lambda x: _pct(x.spend_share)),
    ("all-premium", lambda x: _usd(x.all_premium)),
    ("routing saved", lambda x: _usd(x.routing_savings)),
    ("escalated", lambda x: f"{x.rejected:,} ({_pct(x.escalation_rate)})"),
    ("in tok", lambda x: f"{x.input_tokens:,}"),
    ("out tok", lambda x: f"{x.output_tokens:,}"),
    ("cache hits", lambda x: f"{x.cache_hits:,}"),
    ("saved", lambda x: _usd(x.saved_cost)),
    ("latency ms p50/95/99", lambda x: _ms(x.latency_ms)),
    ("ttft ms p50/95/99", lambda x: _ms(x.ttft_ms)),
)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _widths(rows: list[list[str]]) -> list[int]:
    return [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]


def _fitted(report: SpendReport, columns: tuple[Column, ...], limit: int | None) -> list[list[str]]:
    """Header and body cells; with a `limit`, long group names are cut and the last columns
    dropped until a line fits in it."""
    lines = [*report.lines, report.total]
    groups = [report.group_by, *(report.label(line.group) for line in lines)]
    chosen = list(columns)
    while True:
        cells = [[name for name, _ in chosen], *([cell(line) for _, cell in chosen] for line in lines)]
        widths = _widths(cells) if chosen else []
        rest = sum(widths) + 2 * len(widths)  # each column and the two spaces before it
        group_width = max(len(g) for g in groups)
        if limit is not None:
            group_width = min(group_width, max(_MIN_GROUP_WIDTH, limit - rest))
        if limit is None or group_width + rest <= limit or not chosen:
            return [[_cut(g, group_width), *row] for g, row in zip(groups, cells, strict=True)]
        chosen.pop()


def render_table(report: SpendReport, *, wide: bool = False) -> str:
    rows = _fitted(report, TABLE_COLUMNS if wide else COMPACT_COLUMNS, None if wide else TABLE_WIDTH)
    widths = _widths(rows)

    def fmt(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True))])

    rule = "  ".join("-" * w for w in widths)
    title = f"spend by {report.group_by}, {report.since.isoformat()} .. {report.until.isoformat()}"
    out = [title, fmt(rows[0]), rule, *(fmt(r) for r in rows[1:-1]), rule, fmt(rows[-1])]
    if not wide:
        out.append(COMPACT_FOOTNOTE)
    return "\n".join(out)


def render_csv(report: SpendReport) -> str:
    records = flat_records(report)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def render_json(report: SpendReport) -> str:
    return json.dumps(report_to_json(report), indent=2)


def render(report: SpendReport, fmt: ReportFormat, *, wide: bool = False) -> str | bytes:
    """Text for table, csv and json; the workbook's bytes for xlsx (needs the `xlsx` extra)."""
    if fmt == "xlsx":
        from margin.ledger.report_xlsx import render_xlsx  # xlsxwriter only where it is used

        return render_xlsx(report)
    if fmt == "table":
        return render_table(report, wide=wide)
    return {"csv": render_csv, "json": render_json}[fmt](report)
