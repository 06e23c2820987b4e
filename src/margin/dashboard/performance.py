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
from margin.storage.rollups import NO_VALUE, percentile

PARAMS = ("since", "until", "period")
MAX_SERIES_BUCKETS = 48  # one histogram read per bucket
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
    if scope.team is not None:
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
    """Per bucket (the last MAX_SERIES_BUCKETS of the window) and deployment."""
    first = max(int(since // period_s) * period_s, (int(until // period_s) - MAX_SERIES_BUCKETS + 1) * period_s)
    out: list[list[Cell]] = []
    for start in range(first, int(until), period_s):
        rows = await store.spend_report(max(start, since), min(start + period_s, until), "deployment")
        bucket = datetime.fromtimestamp(start, UTC).isoformat()
        out.extend(
            [bucket, row.group, row.attempts, ratio(row.error_attempts, row.attempts),
             _ms(row.latency_histogram, 0.95), _ms(row.ttft_histogram, 0.95)]
            for row in rows if row.group != NO_VALUE
        )  # fmt: skip
    return table(f"Per {period} (the last {MAX_SERIES_BUCKETS} at most)", SERIES_COLUMNS, out)
