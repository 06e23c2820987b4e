"""The shape every dashboard page after the Overview shares, page and JSON twin alike:

    {"page": ..., "scope": {"team": ...}, "window": {...}, "notes": [...],
     "summary": {name: value}, "tables": {name: {"title", "columns", "rows": [[...], ...]}}}

Values are strings or ints (money as micro-dollar decimal strings, ratios to 4 places), so the HTML
shows exactly the twin's text; a figure's `data-figure` is its path in the twin
(`summary.spend_usd`, `tables.groups.rows.0.3`)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

MONEY = Decimal("0.000001")
RATIO = Decimal("0.0001")
Cell = str | int | float | None


def money(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount.quantize(MONEY, ROUND_HALF_EVEN))


def ratio(part: Decimal | int, whole: Decimal | int) -> str | None:
    if not whole:
        return None
    return str((Decimal(part) / Decimal(whole)).quantize(RATIO, ROUND_HALF_EVEN))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Cell]]) -> dict[str, Any]:
    return {"title": title, "columns": list(columns), "rows": [list(row) for row in rows]}


def page_figures(
    page: str,
    team: str | None,
    *,
    window: dict[str, str] | None = None,
    summary: dict[str, Cell] | None = None,
    tables: dict[str, dict[str, Any]] | None = None,
    notes: Sequence[str] = (),
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "page": page,
        "scope": {"team": team},
        "window": window,
        "query": query or {},
        "notes": list(notes),
        "summary": summary or {},
        "tables": tables or {},
    }
