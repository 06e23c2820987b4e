"""Performance by deployment over a window: attempts, error rate, the share of attempts that were
retries or failovers, latency and TTFT p50/p95/p99 (from the rollups' log-spaced histograms: within
4.5%), per window and per hour or day; beside them, from the running process, each deployment's
circuit state and its local-tier queue.

Not in the rollups: tokens/s (rows carry it, cells do not), failovers apart from retries (the
fallback index is not rolled up) and GPU utilisation. A deployment's cells mix every team, so a
team's viewer is refused this page."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from margin.dashboard.explorer import Scope
from margin.dashboard.live import LiveSource
from margin.dashboard.query import check_params, window
from margin.dashboard.tables import Cell, page_figures, ratio, table
from margin.errors import PermissionDenied
from margin.ledger.report import TOTAL, merge_rows
from margin.storage.protocols import LedgerStore, ReportRow
from margin.storage.rollups import NO_VALUE, bin_midpoint, percentile

PARAMS = ("since", "until", "period")
QS = (0.5, 0.95, 0.99)
DEPLOYMENT_COLUMNS = (
    "deployment", "attempts", "error_rate", "retry_share", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
    "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "circuit", "queue",
)  # fmt: skip
SERIES_COLUMNS = ("bucket", "deployment", "attempts", "error_rate", "latency_p95_ms", "ttft_p95_ms")


def _ms(histogram: Mapping[int, int], q: float) -> float | None:
    found = percentile(histogram, q)
    return None if found is None else round(found, 1)


def _retry_share(row: ReportRow) -> str | None:
    """Attempts that were not a request's first (retries and failovers landing here), over attempts."""
    first = row.requests - row.refused_budget - row.refused_rate_limit
    return ratio(max(row.attempts - first, 0), row.attempts)


async def build_performance(
    store: LedgerStore, live: LiveSource, query: Mapping[str, str], now: datetime, scope: Scope
) -> dict[str, Any]:
    check_params(query, PARAMS)
    if scope.viewer:
        raise PermissionDenied("performance is per deployment, whose figures mix every team: ask the admin")
    win = window(query, now.astimezone(UTC), default_since="7d", default_period="day")
    since, until = win.since.timestamp(), win.until.timestamp()
    rows = [r for r in await store.spend_report(since, until, "deployment") if r.group != NO_VALUE]
    circuits, queues = await live.circuits(), live.local_queues()
    names = sorted({*(r.group for r in rows), *circuits})
    by_name = {r.group: r for r in rows}
    table_rows = [_deployment_row(name, by_name.get(name), circuits.get(name), queues.get(name)) for name in names]
    total = merge_rows(TOTAL, rows)
    return page_figures(
        "performance",
        None,
        window=win.as_json(),
        summary={"attempts": total.attempts, "error_rate": ratio(total.error_attempts, total.attempts),
                 "retry_share": _retry_share(total), "latency_p95_ms": _ms(total.latency_histogram, 0.95),
                 "ttft_p95_ms": _ms(total.ttft_histogram, 0.95),
                 "open_circuits": sum(state != "closed" for state in circuits.values())},
        tables={"deployments": table("By deployment", DEPLOYMENT_COLUMNS, table_rows),
                "series": await _series(store, since, until, win.period_s, win.period)},
        notes=["Percentiles come from log-spaced histograms (within 4.5%); circuit and queue are live."],
    )  # fmt: skip


def _deployment_row(name: str, row: ReportRow | None, circuit: str | None, queue: int | None) -> list[Cell]:
    if row is None:
        return [name, 0, None, None, None, None, None, None, None, None, circuit, queue]
    return [
        name, row.attempts, ratio(row.error_attempts, row.attempts), _retry_share(row),
        *(_ms(row.latency_histogram, q) for q in QS), *(_ms(row.ttft_histogram, q) for q in QS), circuit, queue,
    ]  # fmt: skip


async def _series(store: LedgerStore, since: float, until: float, period_s: int, period: str) -> dict[str, Any]:
    """Per bucket and deployment: attempts and error rate from the rollup cells, p95s computed by the
    store from the histograms (one row per point, however many bins are filled)."""
    cells = await store.bucket_report(since, until, "deployment", period_s)
    points = await store.bucket_percentiles(since, until, "deployment", period_s, 0.95)
    p95 = {(start, value, metric): bin_midpoint(index) for start, value, metric, index in points}
    out: list[list[Cell]] = []
    for cell in cells:
        row = cell.row
        if row.group == NO_VALUE:
            continue
        latency, ttft = (p95.get((cell.start, row.group, metric)) for metric in ("latency", "ttft"))
        out.append([datetime.fromtimestamp(cell.start, UTC).isoformat(), row.group, row.attempts,
                    ratio(row.error_attempts, row.attempts), None if latency is None else round(latency, 1),
                    None if ttft is None else round(ttft, 1)])  # fmt: skip
    return table(f"Per {period}", SERIES_COLUMNS, out)
