"""Spend reports from the ledger's rollups: `margin report` and `GET /admin/spend` share this.

Per group (key, team, tag, model, cost_rank, deployment or batch) and in total: spend, requests, attempts,
tokens, cost per 1,000 requests, cost per successful request (the numerator is every attempt's
cost, failed and retried ones included), share of requests and of spend, cache hits and the cost
they saved, latency and TTFT p50/p95/p99 (from the rollups' histograms: within 9.1%), and for tiered
routing the all-premium counterfactual (what the premium tier would have charged for the same
answers) and the savings against it (escalations and verifier calls count against them).

Requests margin's own limits refused before any upstream call (402 budget, 429 rate or concurrency
limit) are requests too, in their own columns (`refused_budget`, `refused_rate_limit`): they cost
nothing and are never attempts; they count under "(none)" for model, deployment and cost_rank.

A row with several tags counts under each of them, so tag lines may add up to more than the total;
the total is always computed from a dimension where each row has exactly one value. Groups are ids
(key ids, cost ranks); `labels` names them for people (key names, the deployments of a rank).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from margin.storage.ledger_row import USAGE_COLUMNS
from margin.storage.protocols import GroupBy, LedgerStore, ReportRow
from margin.storage.rollups import CACHE_COLUMNS, merge_histograms, percentile

RATIO_QUANTUM = Decimal("1e-12")
DEFAULT_SINCE = "7d"
TOTAL = "(total)"
# The report's dimensions as users name them -> the ledger dimension each reads. The ledger's `tier`
# column holds each deployment's cost_rank; `--by tier` is accepted as the old name until the next
# release (tier now means only the named tiers of a tiered model group).
# `batch` reads the tag rollups: every batch line's rows carry the tag `batch:<id>` (one batch per
# row), so a batch's line is its tag's, named by the batch id; rows of no batch are left out.
REPORT_DIMENSIONS: dict[str, GroupBy] = {
    "key": "key", "team": "team", "tag": "tag", "model": "model", "cost_rank": "tier", "deployment": "deployment",
    "batch": "tag",
}  # fmt: skip
BATCH_TAG_PREFIX = "batch:"
DEPRECATED_DIMENSIONS: dict[str, str] = {"tier": "cost_rank"}
REPORT_BY_CHOICES: tuple[str, ...] = (*REPORT_DIMENSIONS, *DEPRECATED_DIMENSIONS)
_INPUT_BUCKETS = ("input_uncached", "input_cache_read", "input_cache_write", "input_audio", "input_image")
_OUTPUT_BUCKETS = ("output", "output_reasoning", "output_audio")
_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class SpendLine:
    group: str
    requests: int
    attempts: int
    successful: int
    error_attempts: int
    input_tokens: int
    output_tokens: int
    spend: Decimal
    cost_per_1k_requests: Decimal | None
    cost_per_successful_request: Decimal | None
    request_share: float | None
    spend_share: float | None
    cache_hits: int
    saved_cost: Decimal
    price_unknown: int
    latency_ms: Percentiles
    ttft_ms: Percentiles
    # Tiered routing: what the same traffic would have cost with the premium tier answering all of
    # it (spend + routing savings; equal to spend for untiered routes), and the savings.
    routing_savings: Decimal = Decimal(0)
    all_premium: Decimal = Decimal(0)
    rejected: int = 0  # answers a cascade produced here, checked and escalated
    escalation_rate: float | None = None  # rejected / answers produced here (rejected + successful)
    refused_budget: int = 0  # refused by a budget (402) before any upstream call
    refused_rate_limit: int = 0  # refused by a rate or concurrency limit (429)


@dataclass(frozen=True, slots=True)
class SpendReport:
    since: datetime
    until: datetime
    group_by: str  # the dimension's name, as in REPORT_DIMENSIONS
    lines: list[SpendLine]
    total: SpendLine
    labels: Mapping[str, str] = field(default_factory=dict)  # group -> what people call it

    def label(self, group: str) -> str:
        return self.labels.get(group, group)


def parse_when(text: str, now: datetime) -> datetime:
    """`now`, a span back from now (`90m`, `24h`, `7d`, `2w`), an ISO date (UTC midnight) or an ISO
    datetime (UTC when it names no zone)."""
    value = text.strip().lower()
    if value == "now":
        return now
    relative = _RELATIVE.match(value)
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a time: use now, 24h, 7d, 2026-05-01 or 2026-05-01T12:00") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def report_window(since: str | None, until: str | None, now: datetime | None = None) -> tuple[datetime, datetime]:
    moment = now or datetime.now(UTC)
    start = parse_when(since or DEFAULT_SINCE, moment)
    end = parse_when(until or "now", moment)
    if end <= start:
        raise ValueError(f"the report window is empty: since {start.isoformat()} is not before until {end.isoformat()}")
    return start, end


def _ratio(amount: Decimal, count: int, scale: int = 1) -> Decimal | None:
    return (amount * scale / count).quantize(RATIO_QUANTUM, ROUND_HALF_EVEN) if count else None


def _share(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _percentiles(histogram: Mapping[int, int]) -> Percentiles:
    def at(q: float) -> float | None:
        found = percentile(histogram, q)
        return None if found is None else round(found, 1)

    return Percentiles(at(0.5), at(0.95), at(0.99))


def merge_rows(group: str, rows: Sequence[ReportRow]) -> ReportRow:
    """One row summing `rows` (of a dimension where each ledger row has exactly one value)."""
    return ReportRow(
        group=group,
        attempts=sum(r.attempts for r in rows),
        requests=sum(r.requests for r in rows),
        successful=sum(r.successful for r in rows),
        error_attempts=sum(r.error_attempts for r in rows),
        cache_hits=sum(r.cache_hits for r in rows),
        price_unknown=sum(r.price_unknown for r in rows),
        tokens={b: sum(r.tokens.get(b, 0) for r in rows) for b in USAGE_COLUMNS},
        cost_total=sum((r.cost_total for r in rows), Decimal(0)),
        saved_cost=sum((r.saved_cost for r in rows), Decimal(0)),
        routing_savings=sum((r.routing_savings for r in rows), Decimal(0)),
        rejected=sum(r.rejected for r in rows),
        refused_budget=sum(r.refused_budget for r in rows),
        refused_rate_limit=sum(r.refused_rate_limit for r in rows),
        latency_histogram=merge_histograms(r.latency_histogram for r in rows),
        ttft_histogram=merge_histograms(r.ttft_histogram for r in rows),
        cache={name: sum(r.cache.get(name, 0) for r in rows) for name in CACHE_COLUMNS},
        generated_tokens=sum(r.generated_tokens for r in rows),
        generation_us=sum(r.generation_us for r in rows),
    )


def spend_line(row: ReportRow, total: ReportRow) -> SpendLine:
    return SpendLine(
        group=row.group,
        requests=row.requests,
        attempts=row.attempts,
        successful=row.successful,
        error_attempts=row.error_attempts,
        input_tokens=sum(row.tokens.get(b, 0) for b in _INPUT_BUCKETS),
        output_tokens=sum(row.tokens.get(b, 0) for b in _OUTPUT_BUCKETS),
        spend=row.cost_total,
        cost_per_1k_requests=_ratio(row.cost_total, row.requests, 1000),
        cost_per_successful_request=_ratio(row.cost_total, row.successful),
        request_share=_share(row.requests, total.requests),
        spend_share=_share(float(row.cost_total), float(total.cost_total)),
        cache_hits=row.cache_hits,
        saved_cost=row.saved_cost,
        price_unknown=row.price_unknown,
        latency_ms=_percentiles(row.latency_histogram),
        ttft_ms=_percentiles(row.ttft_histogram),
        routing_savings=row.routing_savings,
        all_premium=row.cost_total + row.routing_savings,
        rejected=row.rejected,
        escalation_rate=_share(row.rejected, row.rejected + row.successful),
        refused_budget=row.refused_budget,
        refused_rate_limit=row.refused_rate_limit,
    )


def batch_rows(tag_rows: Sequence[ReportRow]) -> list[ReportRow]:
    """The tag rows of batches (`batch:<id>`), each named by its batch id."""
    return [
        replace(row, group=row.group.removeprefix(BATCH_TAG_PREFIX))
        for row in tag_rows
        if row.group.startswith(BATCH_TAG_PREFIX) and len(row.group) > len(BATCH_TAG_PREFIX)
    ]


def report_dimension(name: str) -> str:
    """The current name of report dimension `name` (old names map to new ones); ValueError if unknown."""
    current = DEPRECATED_DIMENSIONS.get(name, name)
    if current not in REPORT_DIMENSIONS:
        raise ValueError(f"cannot group by {name!r}: choose one of {', '.join(REPORT_DIMENSIONS)}")
    return current


async def build_spend_report(
    store: LedgerStore,
    *,
    since: datetime,
    until: datetime,
    group_by: str,
    labels: Mapping[str, str] | None = None,
    histograms: bool = True,
) -> SpendReport:
    """The report for [since, until) (minute resolution), from rollups only; `histograms=False`
    leaves the latency and TTFT percentiles out (and their histograms unread)."""
    name = report_dimension(group_by)
    dimension = REPORT_DIMENSIONS[name]
    start, end = since.timestamp(), until.timestamp()
    rows = await store.spend_report(start, end, dimension, histograms=histograms)
    if name == "batch":
        rows = batch_rows(rows)
    single_valued = (
        rows if dimension != "tag" else await store.spend_report(start, end, "deployment", histograms=histograms)
    )
    total = merge_rows(TOTAL, single_valued)
    lines = sorted((spend_line(row, total) for row in rows), key=lambda line: (-line.spend, line.group))
    return SpendReport(since, until, name, lines, spend_line(total, total), dict(labels or {}))


def _money(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def line_to_json(line: SpendLine, name: str | None = None) -> dict[str, Any]:
    """Money as exact decimal strings; shares as fractions; times in milliseconds. `name`: what
    people call the group (a key's name), when it is not the group id itself."""
    named = {} if name is None or name == line.group else {"name": name}
    return {
        "group": line.group,
        **named,
        "requests": line.requests,
        "refused_budget": line.refused_budget,
        "refused_rate_limit": line.refused_rate_limit,
        "attempts": line.attempts,
        "successful_requests": line.successful,
        "error_attempts": line.error_attempts,
        "input_tokens": line.input_tokens,
        "output_tokens": line.output_tokens,
        "spend_usd": _money(line.spend),
        "cost_per_1k_requests_usd": _money(line.cost_per_1k_requests),
        "cost_per_successful_request_usd": _money(line.cost_per_successful_request),
        "request_share": line.request_share,
        "spend_share": line.spend_share,
        "cache_hits": line.cache_hits,
        "cache_savings_usd": _money(line.saved_cost),
        "all_premium_usd": _money(line.all_premium),
        "routing_savings_usd": _money(line.routing_savings),
        "escalated": line.rejected,
        "escalation_rate": line.escalation_rate,
        "price_unknown_attempts": line.price_unknown,
        "latency_ms": {"p50": line.latency_ms.p50, "p95": line.latency_ms.p95, "p99": line.latency_ms.p99},
        "ttft_ms": {"p50": line.ttft_ms.p50, "p95": line.ttft_ms.p95, "p99": line.ttft_ms.p99},
    }


def flat_record(line: SpendLine, name: str | None = None) -> dict[str, Any]:
    record = line_to_json(line)
    record = {"group": record.pop("group"), "name": name or line.group, **record}
    for metric in ("latency_ms", "ttft_ms"):
        values = record.pop(metric)
        assert isinstance(values, dict)
        for q, value in values.items():
            record[f"{metric.removesuffix('_ms')}_{q}_ms"] = value
    return record


def flat_records(report: SpendReport) -> list[dict[str, Any]]:
    """One flat record per group and the total, every field; `name` beside `group`."""
    return [flat_record(line, report.label(line.group)) for line in [*report.lines, report.total]]


def report_to_json(report: SpendReport) -> dict[str, Any]:
    return {
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "group_by": report.group_by,
        "groups": [line_to_json(line, report.label(line.group)) for line in report.lines],
        "total": line_to_json(report.total),
    }


async def admin_spend(store: LedgerStore, query: Mapping[str, str], *, now: datetime | None = None) -> dict[str, Any]:
    """`GET /admin/spend?since=7d&until=now&by=model`: the report as JSON. Raises ValueError on a bad
    parameter (a 400 for the caller to render)."""
    group_by = query.get("by", "model")
    if group_by not in REPORT_BY_CHOICES:
        raise ValueError(f"by: choose one of {', '.join(REPORT_DIMENSIONS)}")
    since, until = report_window(query.get("since"), query.get("until"), now)
    report = await build_spend_report(store, since=since, until=until, group_by=group_by)
    return report_to_json(report)
