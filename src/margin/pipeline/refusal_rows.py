"""Refused requests in the ledger: a request margin's own budget (402) or rate limit (429) refused
before any upstream call gets one row (status `refused`, cost 0, no deployment), so reports count it
beside the requests that were served.

Written through the ordinary path (recorder queue -> ledger writer -> store), off the request path.
A refusal costs the gateway microseconds, so one key hammering a spent budget could otherwise write
rows as fast as it can send: each key's refusal rows are capped per second (`max_per_key_s`); the
rest are counted in `margin_refusals_unrecorded_total` (and in `margin_errors_total`, which counts
every refusal).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from margin.pipeline.record import RequestRecord
from margin.pipeline.route_labels import decision_extra
from margin.storage.ledger_row import REFUSAL_CODES, LedgerRow, unattempted_row

Label = Callable[[str], str]  # error class name -> error code (margin.pipeline.error_labels)


def refusal_row(record: RequestRecord, code: str) -> LedgerRow:
    """The one row of a refused request; `code` is `budget_exceeded` or `rate_limit_exceeded`. Its
    `extra` keeps the route already decided (`margin requests show` explains refusals too)."""
    ctx = record.ctx
    return unattempted_row(
        ctx.ledger_columns(),
        ts=ctx.wall_started,
        status="refused",
        error_class=code,
        latency_ms=record.latency_s * 1000,
        extra=decision_extra(ctx),
    )


class RefusalRows:
    """Which refused requests get a row: every one, up to `max_per_key_s` per key per second."""

    def __init__(self, label: Label, *, max_per_key_s: int = 20) -> None:
        self.label = label
        self.max_per_key_s = max_per_key_s
        self.unrecorded = 0  # refusals over the cap: counted, not written
        self._second = -1
        self._counts: dict[str, int] = {}  # key -> rows this second (cleared every second: bounded)

    def row_of(self, record: RequestRecord) -> LedgerRow | None:
        """The record's refusal row, or None (served, failed upstream, or over the cap)."""
        ctx = record.ctx
        if ctx.attempts or ctx.cache_row is not None:
            return None
        code = self.label(record.status)
        if code not in REFUSAL_CODES:
            return None
        second = math.floor(ctx.wall_started)
        if second > self._second:  # a record from an earlier second counts in the current one
            self._second, self._counts = second, {}
        key = ctx.principal.key_id
        seen = self._counts.get(key, 0)
        if seen >= self.max_per_key_s:
            self.unrecorded += 1
            return None
        self._counts[key] = seen + 1
        return refusal_row(record, code)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "margin_refusals_unrecorded",
            "Refused requests not written to the ledger (over the per-key cap of rows per second)",
            value=self.unrecorded,
        )
