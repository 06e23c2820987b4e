"""Cache: from the rollups, across every replica, requests, cache hits, hit rate and the cost the hits
saved, in total and per model (a team's viewer: its team and its keys); requests by what their cache
lookup found (hits by kind: exact, semantic, coalesced; misses; bypasses by reason), over the window
and per hour or day; from the running process (admin only), this replica's lookups since it started."""

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
from margin.storage.rollups import BYPASS_REASONS

PARAMS = ("since", "until", "period")
COLUMNS = ("group", "requests", "cache_hits", "hit_rate", "saved_usd", "exact", "semantic", "coalesced", "bypassed")
KINDS = ("hits_exact", "hits_semantic", "hits_coalesced", "cache_misses")
BYPASSES = tuple(f"bypass_{reason}" for reason in (*BYPASS_REASONS, "other"))
OUTCOME_COLUMNS = ("outcome", "requests", "share")
SERIES_COLUMNS = ("bucket", "exact", "semantic", "coalesced", "misses", "bypassed")
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
    tables = {
        "groups": table(f"By {dimension}", COLUMNS, [_row(row) for row in rows]),
        "outcomes": table("Requests by cache outcome, every replica", OUTCOME_COLUMNS, _outcomes(total)),
        "series": await _series(store, since, until, win.period_s, win.period, scope),
    }
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
                 "hit_rate": ratio(total.cache_hits, total.requests), "saved_usd": money(total.saved_cost),
                 **{name: total.cache.get(name, 0) for name in KINDS}, "bypassed": _bypassed(total)},
        tables=tables,
        notes=["Outcomes and their series come from the rollups (every replica); the lookups table is this "
               "replica's since it started. Requests recorded before the outcome columns existed count as none.",
               *([ROUTES_NOTE] if "routes" in tables else [])],
    )  # fmt: skip


def _bypassed(row: ReportRow) -> int:
    return sum(row.cache.get(name, 0) for name in BYPASSES)


def _row(row: ReportRow) -> list[Cell]:
    kinds = [row.cache.get(f"hits_{kind}", 0) for kind in ("exact", "semantic", "coalesced")]
    return [row.group, row.requests, row.cache_hits, ratio(row.cache_hits, row.requests), money(row.saved_cost),
            *kinds, _bypassed(row)]  # fmt: skip


def _outcomes(total: ReportRow) -> list[list[Cell]]:
    """Each hit kind, misses and each bypass reason, with its share of the window's requests."""
    return [[name, total.cache.get(name, 0), ratio(total.cache.get(name, 0), total.requests)]
            for name in (*KINDS, *BYPASSES)]  # fmt: skip


async def _series(
    store: LedgerStore, since: float, until: float, period_s: int, period: str, scope: Scope
) -> dict[str, Any]:
    """Outcomes per bucket, summed over the cells in scope: a model's (each request counts under one
    model) for the admin, the team's cell for a team's viewer, the org's keys' for an org's viewer."""
    dimension: GroupBy = "model" if not scope.viewer else "key" if scope.org is not None else "team"
    wanted = None if not scope.viewer else scope.team_keys if scope.org is not None else scope.teams
    sums: dict[int, list[int]] = {}
    for cell in await store.bucket_report(since, until, dimension, period_s):
        if wanted is not None and cell.row.group not in wanted:
            continue
        counts = [cell.row.cache.get(name, 0) for name in KINDS] + [_bypassed(cell.row)]
        sums[cell.start] = [a + b for a, b in zip(sums.get(cell.start, [0] * 5), counts, strict=True)]
    rows: list[list[Cell]] = [
        [datetime.fromtimestamp(start, UTC).isoformat(), *counts] for start, counts in sorted(sums.items())
    ]
    return table(f"Outcomes per {period}", SERIES_COLUMNS, rows)


def _route(row: Mapping[str, Any]) -> list[Cell]:
    """One route of the shadow record (`RouteQuality.as_json`) as the page's cells."""
    at = row["min_probability"] if row["decision"] == "learned" else row["threshold"]
    hits, lookups, agreed = int(row["would_hit"]), int(row["lookups"]), int(row["agreed"])
    bound = Decimal(str(row["precision_lower_bound"])).quantize(RATIO, ROUND_HALF_EVEN)
    return [str(row["route"]), str(row["mode"]), str(row["decision"]), str(at), lookups, hits,
            ratio(hits, lookups), agreed, ratio(agreed, hits), str(bound) if hits else None]  # fmt: skip
