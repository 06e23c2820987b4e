"""Cache: from the rollups, requests, cache hits, hit rate and the cost the hits saved, in total and
per model (a team's viewer: its team and its keys); from the running process (admin only), lookups
since start by result: exact, semantic, coalesced, misses, bypassed. Hits by kind and bypass reasons
are not in the rollups (a cell counts hits of every kind; bypasses are not counted by reason)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from margin.dashboard.explorer import Scope
from margin.dashboard.live import LiveSource
from margin.dashboard.query import check_params, window
from margin.dashboard.tables import RATIO, Cell, money, page_figures, ratio, table
from margin.ledger.report import TOTAL, merge_rows
from margin.storage.protocols import GroupBy, LedgerStore, ReportRow

PARAMS = ("since", "until")
COLUMNS = ("group", "requests", "cache_hits", "hit_rate", "saved_usd")
ROUTES_TITLE = "Semantic cache per route, from the shadow record: would-be hit rate and estimated precision"
ROUTE_COLUMNS = ("route", "mode", "decision", "at", "lookups", "would_hit", "hit_rate", "agreed", "precision",
                 "precision_lower_bound")  # fmt: skip
ROUTES_NOTE = (
    "Routes: lookups a route in shadow mode made, would-be hits at its configured decision (cosine "
    "threshold, or min_probability for the learned one), how many agreed with the fresh answer, and the "
    "precision's one-sided 95% Clopper-Pearson lower bound, as margin cache shadow-report prints them."
)


async def build_cache(
    store: LedgerStore, live: LiveSource, query: Mapping[str, str], now: datetime, scope: Scope
) -> dict[str, Any]:
    check_params(query, PARAMS)
    win = window(query, now.astimezone(UTC), default_since="7d", default_period="day")
    since, until = win.since.timestamp(), win.until.timestamp()
    dimension: GroupBy = "key" if scope.viewer else "model"
    rows = await store.spend_report(since, until, dimension, histograms=False)
    if scope.viewer:
        keys = scope.team_keys
        rows = [row for row in rows if row.group in keys]
        if scope.org is not None:  # an org's totals are its keys' cells (a row's org is its key's)
            total = merge_rows(TOTAL, rows)
        else:
            teams = await store.spend_report(since, until, "team", histograms=False)
            total = merge_rows(TOTAL, [r for r in teams if r.group == scope.team])
    else:
        total = merge_rows(TOTAL, rows)
    rows = sorted(rows, key=lambda row: (-row.saved_cost, row.group))
    tables = {"groups": table(f"By {dimension}", COLUMNS, [_row(row) for row in rows])}
    counters = None if scope.viewer else live.cache_counters()
    if counters is not None:
        lookups = sum(counters.values())
        tables["lookups"] = table("Lookups since this replica started", ("result", "lookups", "share"),
                                  [[name, n, ratio(n, lookups)] for name, n in counters.items()])  # fmt: skip
    shadow = None if scope.viewer else await live.cache_routes()
    if shadow is not None:
        tables["routes"] = table(ROUTES_TITLE, ROUTE_COLUMNS, [_route(r) for r in shadow])
    return page_figures(
        "cache",
        scope.team,
        window=win.as_json(),
        summary={"requests": total.requests, "cache_hits": total.cache_hits,
                 "hit_rate": ratio(total.cache_hits, total.requests), "saved_usd": money(total.saved_cost)},
        tables=tables,
        notes=["Hits by kind and bypass reasons are not in the rollups; the lookups table is this replica's.",
               *([ROUTES_NOTE] if "routes" in tables else [])],
    )  # fmt: skip


def _row(row: ReportRow) -> list[Cell]:
    return [row.group, row.requests, row.cache_hits, ratio(row.cache_hits, row.requests), money(row.saved_cost)]


def _route(row: Mapping[str, Any]) -> list[Cell]:
    """One route of the shadow record (`RouteQuality.as_json`) as the page's cells."""
    at = row["min_probability"] if row["decision"] == "learned" else row["threshold"]
    hits, lookups, agreed = int(row["would_hit"]), int(row["lookups"]), int(row["agreed"])
    bound = Decimal(str(row["precision_lower_bound"])).quantize(RATIO, ROUND_HALF_EVEN)
    return [str(row["route"]), str(row["mode"]), str(row["decision"]), str(at), lookups, hits,
            ratio(hits, lookups), agreed, ratio(agreed, hits), str(bound) if hits else None]  # fmt: skip
