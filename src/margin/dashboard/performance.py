"""Performance by deployment over a window: attempts, error rate, the share of attempts that were
retries or failovers, latency and TTFT p50/p95/p99 (from the rollups' fixed-bin histograms: within
9.1%) and tokens/s (output tokens over the time spent generating them, summed in the cells), per
window and per hour or day; beside them, from the running process, each deployment's circuit state,
its local-tier queue and its model server's KV-cache (GPU memory) usage as the autoscaler last
scraped it from the server's /metrics ("not exposed" when nothing scrapes one).

Every figure is read from rollup cells (one row per cell, whatever the ledger's size). Not in the
rollups: failovers apart from retries (the fallback index is not rolled up). A deployment's cells
mix every team, so a team's viewer is refused this page."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from margin.dashboard.explorer import Scope
from margin.dashboard.live import LiveSource
from margin.dashboard.query import check_params, window
from margin.dashboard.tables import RATIO, Cell, page_figures, ratio, table
from margin.errors import PermissionDenied
from margin.ledger.report import TOTAL, merge_rows
from margin.storage.protocols import LedgerStore, ReportRow
from margin.storage.rollups import NO_VALUE, percentile

PARAMS = ("since", "until", "period")
QS = (0.5, 0.95, 0.99)
DEPLOYMENT_COLUMNS = (
    "deployment", "attempts", "error_rate", "retry_share", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
    "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "circuit", "queue", "tokens_per_s", "gpu_kv_cache_usage",
)  # fmt: skip
SERIES_COLUMNS = ("bucket", "deployment", "attempts", "error_rate", "latency_p95_ms", "ttft_p95_ms", "tokens_per_s")
NOT_EXPOSED = "not exposed"


def _ms(histogram: Mapping[int, int], q: float) -> float | None:
    found = percentile(histogram, q)
    return None if found is None else round(found, 1)


def _rate(tokens: int, us: int) -> float | None:
    return round(tokens / (us / 1e6), 1) if us > 0 else None


def _gpu(usage: float | str | None) -> Cell:
    """The live KV-cache usage as a 0-1 ratio, "stale" when the last reading is too old."""
    if isinstance(usage, str):
        return usage
    return NOT_EXPOSED if usage is None else str(Decimal(str(usage)).quantize(RATIO, ROUND_HALF_EVEN))


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
    circuits, queues, gpus = await live.circuits(), live.local_queues(), live.gpu_cache_usage()
    names = sorted({*(r.group for r in rows), *circuits})
    by_name = {r.group: r for r in rows}
    table_rows = [
        [*_deployment_row(name, by_name.get(name), circuits.get(name), queues.get(name)), _gpu(gpus.get(name))]
        for name in names
    ]
    total = merge_rows(TOTAL, rows)
    return page_figures(
        "performance",
        None,
        window=win.as_json(),
        summary={"attempts": total.attempts, "error_rate": ratio(total.error_attempts, total.attempts),
                 "retry_share": _retry_share(total), "latency_p95_ms": _ms(total.latency_histogram, 0.95),
                 "ttft_p95_ms": _ms(total.ttft_histogram, 0.95),
                 "tokens_per_s": _rate(total.generated_tokens, total.generation_us),
                 "open_circuits": sum(state != "closed" for state in circuits.values())},
        tables={"deployments": table("By deployment", DEPLOYMENT_COLUMNS, table_rows),
                "series": await _series(store, since, until, win.period_s, win.period)},
        notes=["Percentiles come from fixed-bin histograms (within 9.1%); tokens/s is output tokens over the time "
               "spent generating them; circuit, queue and GPU KV-cache usage are live."],
    )  # fmt: skip


def _deployment_row(name: str, row: ReportRow | None, circuit: str | None, queue: int | None) -> list[Cell]:
    if row is None:
        return [name, 0, None, None, None, None, None, None, None, None, circuit, queue, None]
    return [
        name, row.attempts, ratio(row.error_attempts, row.attempts), _retry_share(row),
        *(_ms(row.latency_histogram, q) for q in QS), *(_ms(row.ttft_histogram, q) for q in QS), circuit, queue,
        _rate(row.generated_tokens, row.generation_us),
    ]  # fmt: skip


async def _series(store: LedgerStore, since: float, until: float, period_s: int, period: str) -> dict[str, Any]:
    """Per bucket and deployment: attempts and error rate from the rollup cells, p95s and tokens/s from
    the timing cells (one row per cell, however many ledger rows or bins it holds)."""
    cells = await store.bucket_report(since, until, "deployment", period_s)
    timings = {
        (start, value): t for start, value, t in await store.bucket_timings(since, until, "deployment", period_s)
    }
    out: list[list[Cell]] = []
    for cell in cells:
        row = cell.row
        if row.group == NO_VALUE:
            continue
        timing = timings.get((cell.start, row.group))
        latency, ttft, rate = (None, None, None) if timing is None else (
            _ms(timing.latency, 0.95), _ms(timing.ttft, 0.95), _rate(timing.generated_tokens, timing.generation_us)
        )  # fmt: skip
        out.append([datetime.fromtimestamp(cell.start, UTC).isoformat(), row.group, row.attempts,
                    ratio(row.error_attempts, row.attempts), latency, ttft, rate])  # fmt: skip
    return table(f"Per {period}", SERIES_COLUMNS, out)
