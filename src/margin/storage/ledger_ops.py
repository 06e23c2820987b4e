"""Driver-free glue shared by the SQL ledger stores: statement parameters and result shaping."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from margin.storage.ledger_row import COST_COLUMNS, USAGE_COLUMNS
from margin.storage.ledger_schema import quantize_money
from margin.storage.protocols import AuditEntry, BucketRow, CostChange, ReportRow, Timings
from margin.storage.rollups import (
    CACHE_COLUMNS,
    COUNT_COLUMNS,
    PERIODS,
    ROLLUP_INT_COLUMNS,
    RollupDelta,
    RollupKey,
    cells_of,
    group_values,
)
from margin.storage.timing import NO_TIMINGS

Money = Callable[[Decimal], Any]


def rollup_params(deltas: Mapping[RollupKey, RollupDelta], money: Money) -> list[tuple[Any, ...]]:
    """Upsert parameters in key order, so concurrent writers lock cells in the same order."""
    return [
        (*key, *delta.counts, money(delta.cost_total), money(delta.saved_cost), money(delta.routing_savings))
        for key, delta in sorted(deltas.items())
    ]


def segment_params(group_by: str, segments: Sequence[tuple[int, int, int]]) -> list[Any]:
    """Parameters of `LedgerSql.report` and `timing_report`: the dimension and each segment."""
    return [value for segment in segments for value in (group_by, *segment)]


def report_rows(totals: Iterable[Sequence[Any]], timings: Mapping[str, Timings]) -> list[ReportRow]:
    """ReportRows from `LedgerSql.report` records and `timing.timings_by_value` of `timing_report`'s."""
    out = []
    n_counts = len(COUNT_COLUMNS)
    for record in totals:
        group = str(record[0])
        counts = [int(v or 0) for v in record[1 : 1 + len(ROLLUP_INT_COLUMNS)]]
        cost, saved, routed = (Decimal(str(v if v is not None else 0)) for v in record[1 + len(ROLLUP_INT_COLUMNS) :])
        attempts, requests, successful, errors, hits, unknown, rejected, by_budget, by_rate = counts[:9]
        timing = timings.get(group, NO_TIMINGS)
        out.append(
            ReportRow(
                group=group,
                attempts=attempts,
                requests=requests,
                successful=successful,
                error_attempts=errors,
                cache_hits=hits,
                price_unknown=unknown,
                tokens=dict(zip(USAGE_COLUMNS, counts[n_counts:], strict=True)),
                cost_total=cost,
                saved_cost=saved,
                routing_savings=routed,
                rejected=rejected,
                refused_budget=by_budget,
                refused_rate_limit=by_rate,
                cache=dict(zip(CACHE_COLUMNS, counts[9:n_counts], strict=True)),
                latency_histogram=timing.latency,
                ttft_histogram=timing.ttft,
                generated_tokens=timing.generated_tokens,
                generation_us=timing.generation_us,
            )
        )
    return out


def percentile_points(buckets: Iterable[tuple[int, str, Timings]], q: float) -> list[tuple[int, str, str, int]]:
    """`LedgerStore.bucket_percentiles` from `bucket_timings`: per bucket, group and metric, the bin of
    the nearest-rank q-quantile."""
    points = []
    for start, group, timing in buckets:
        for metric, histogram in (("latency", timing.latency), ("ttft", timing.ttft)):
            found = _percentile_bin(histogram, q)
            if found is not None:
                points.append((start, group, metric, found))
    return points


def _percentile_bin(histogram: Mapping[int, int], q: float) -> int | None:
    total = sum(histogram.values())
    if total == 0:
        return None
    rank, seen = max(1, math.ceil(q * total)), 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return index
    return max(histogram)


def bucket_params(since: float, until: float, group_by: str, period_s: int) -> tuple[Any, ...]:
    """Parameters of `LedgerSql.bucket_report`; buckets that start inside [since, until)."""
    if period_s not in PERIODS:
        raise ValueError(f"rollup period must be one of {PERIODS} seconds, not {period_s}")
    return (group_by, period_s, math.ceil(since / period_s) * period_s, math.ceil(until / period_s) * period_s)


def bucket_spend_params(
    since: float, until: float, group_by: str, period_s: int, labels: Mapping[str, str], included: Sequence[str] | None
) -> list[Any]:
    """Parameters of `LedgerSql.bucket_spend(len(labels), spend_included(labels, included))`."""
    pairs = [item for value, label in labels.items() for item in (value, label)]
    only = [] if included is None else [*labels, *included]
    return [*pairs, *bucket_params(since, until, group_by, period_s), *only]


def spend_included(labels: Mapping[str, str], included: Sequence[str] | None) -> int | None:
    return None if included is None else len(labels) + len(included)


def bucket_spend_rows(records: Iterable[Sequence[Any]]) -> list[tuple[int, str | None, Decimal]]:
    return [
        (int(start), None if label is None else str(label), Decimal(str(cost or 0))) for start, label, cost in records
    ]


def bucket_rows(records: Iterable[Sequence[Any]], period_s: int) -> list[BucketRow]:
    """BucketRows from `LedgerSql.bucket_report` records (bucket_start, value, sums...)."""
    return [BucketRow(int(record[0]), period_s, report_rows([record[1:]], {})[0]) for record in records]


def cost_change_params(change: CostChange, money: Money, boolean: Callable[[bool], Any]) -> tuple[Any, ...]:
    """Parameters of `LedgerSql.update_costs` for one change."""
    costs = [money(change.costs.get(column, Decimal(0))) for column in COST_COLUMNS]
    return (
        *costs,
        money(change.cost_total),
        change.price_version,
        change.price_basis,
        boolean(change.price_unknown),
        None if change.routing_savings is None else money(change.routing_savings),
        change.attempt_id,
    )


def reprice_deltas(stored: Iterable[Sequence[Any]], changes: Sequence[CostChange]) -> dict[RollupKey, RollupDelta]:
    """Rollup cells moved by the difference between each stored total and its new total.

    `stored` holds `LedgerSql.reprice_read` records (attempt_id, ts, key, team, tags, model, tier,
    deployment, cost_total, routing_savings) read in the updating transaction.
    """
    by_id = {change.attempt_id: change for change in changes}
    deltas: dict[RollupKey, RollupDelta] = {}
    for attempt_id, ts, key_id, team, tags, model, tier, deployment, old_total, old_savings in stored:
        change = by_id[str(attempt_id)]
        difference = quantize_money(change.cost_total) - Decimal(str(old_total))
        saved = Decimal(0)
        if change.routing_savings is not None:
            saved = quantize_money(change.routing_savings) - Decimal(str(old_savings or 0))
        if not difference and not saved:
            continue
        values = group_values(key_id, team, json.loads(tags), model, tier, deployment)
        for cell in cells_of(float(ts), values):
            delta = deltas.setdefault(cell, RollupDelta())
            delta.cost_total += difference
            delta.routing_savings += saved
    return deltas


def audit_params(entry: AuditEntry, money: Money) -> tuple[Any, ...]:
    versions = {name: list(values) for name, values in entry.price_versions.items()}
    return (
        entry.action,
        entry.actor,
        entry.at,
        entry.since,
        entry.until,
        entry.rows_scanned,
        entry.rows_changed,
        money(entry.old_total),
        money(entry.new_total),
        json.dumps(versions, sort_keys=True),
        json.dumps(dict(entry.detail), sort_keys=True),
    )


def audit_from_values(values: Sequence[Any]) -> AuditEntry:
    action, actor, at, since, until, scanned, changed, old, new, versions, detail = values
    return AuditEntry(
        action=str(action),
        actor=str(actor),
        at=float(at),
        since=float(since),
        until=float(until),
        rows_scanned=int(scanned),
        rows_changed=int(changed),
        old_total=Decimal(str(old)),
        new_total=Decimal(str(new)),
        price_versions={str(k): tuple(v) for k, v in json.loads(versions).items()},
        detail={str(k): str(v) for k, v in json.loads(detail).items()},
    )
