"""Budgets and keys: every budget scope's spend, reservations, limit, remaining and reset time, read
live from the counters (as `GET /admin/budgets`), and the budget alerts this replica sent. A team's
viewer sees its team's budget and its own keys' budgets and alerts only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from margin.dashboard.explorer import Scope
from margin.dashboard.live import LiveSource
from margin.dashboard.query import check_params
from margin.dashboard.tables import Cell, page_figures, table

BUDGET_COLUMNS = ("scope", "unit", "window", "limit", "spent", "reserved", "remaining", "used_fraction", "reset_at")
ALERT_COLUMNS = ("at", "scope", "kind", "window", "threshold", "used", "limit", "reset_at")


def visible(scope_name: str, scope: Scope) -> bool:
    if not scope.viewer:
        return True
    if scope.org is not None and scope_name == f"org:{scope.org}":
        return True
    return scope_name in {f"team:{team}" for team in scope.teams} | {f"key:{key}" for key in scope.team_keys}


async def build_budgets(live: LiveSource, query: Mapping[str, str], scope: Scope) -> dict[str, Any]:
    check_params(query, ())
    entries = [e for e in await live.budgets() if visible(str(e["scope"]), scope)]
    alerts = [a for a in live.alerts() if visible(a.get("scope", ""), scope)]
    rows = [_budget_row(entry) for entry in entries]
    return page_figures(
        "budgets",
        scope.team,
        summary={"budgets": len(rows), "alerts": len(alerts),
                 "over_80_percent": sum(1 for e in entries if float(e.get("used_fraction") or 0) >= 0.8)},
        tables={"budgets": table("Budgets", BUDGET_COLUMNS, rows),
                "alerts": table("Alerts sent by this replica", ALERT_COLUMNS,
                                [[a.get(c) for c in ALERT_COLUMNS] for a in reversed(alerts)])},
        notes=["Spent and reserved are read live from the counters; alerts are this replica's, newest first."],
    )  # fmt: skip


def _budget_row(entry: Mapping[str, Any]) -> list[Cell]:
    def text(name: str) -> Cell:
        value = entry.get(name)
        return None if value is None else value if isinstance(value, int | str) else str(value)

    if "error" in entry:
        return [text("scope"), text("unit"), text("window"), text("limit"), text("error"), None, None, None,
                text("reset_at")]  # fmt: skip
    return [text(name) for name in BUDGET_COLUMNS]
