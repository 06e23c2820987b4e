"""A profile measured from margin's ledger: hourly aggregates in, Profile (and a summary of what was read) out.

The planner never opens a store: the caller reads the ledger (`margin.ledger.hourly_usage`, wired in by
`margin plan --from-ledger`) and hands over rows of the shape `HourlyAggregate` describes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from margin.planner.profile import HOURS, HybridMix, HybridTier, Profile
from margin.types import Money


class LedgerError(ValueError):
    """The ledger cannot supply a profile."""


class HourlyAggregate(Protocol):
    """What the ledger served in one UTC hour on one cost_rank (`tier`); see `margin.ledger.hourly_usage`."""

    @property
    def hour(self) -> datetime: ...
    @property
    def tier(self) -> str: ...
    @property
    def requests(self) -> int: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_hits(self) -> int: ...
    @property
    def cost_total(self) -> Decimal: ...


@dataclass(frozen=True)
class LedgerSummary:
    """The totals a measured profile was built from, reported with the plan so they can be checked."""

    first_hour: datetime
    last_hour: datetime
    days: float  # the span from the first hour's start to the last hour's end
    requests: int
    input_tokens: int
    output_tokens: int
    cache_hits: int
    spend: Money
    model_group: str | None = None


def summarize_ledger(rows: Sequence[HourlyAggregate], model_group: str | None = None) -> LedgerSummary:
    requests = sum(r.requests for r in rows)
    if requests <= 0:
        raise LedgerError(f"no requests in the ledger{f' for model group {model_group!r}' if model_group else ''}")
    first, last = min(r.hour for r in rows), max(r.hour for r in rows)
    return LedgerSummary(
        first_hour=first.astimezone(UTC),
        last_hour=last.astimezone(UTC),
        days=((last - first).total_seconds() / 3600 + 1) / HOURS,
        requests=requests,
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cache_hits=sum(r.cache_hits for r in rows),
        spend=Money(sum((r.cost_total for r in rows), Decimal(0))),
        model_group=model_group,
    )


def profile_from_ledger(rows: Sequence[HourlyAggregate], base: Profile) -> Profile:
    """Replace what the ledger measures (volume, token means, hourly shape, cache hit rate, tier shares) and
    keep what it cannot (SLA, sensitivity, ops capacity, growth, classes, candidates). Per-request p95 lengths
    are not recoverable from hourly sums, so the base profile's p95/mean ratios are applied to the measured
    means."""
    summary = summarize_ledger(rows)
    weights = [0.0] * HOURS
    for r in rows:
        weights[r.hour.astimezone(UTC).hour] += r.requests
    input_mean = summary.input_tokens / summary.requests
    output_mean = summary.output_tokens / summary.requests
    data: dict[str, Any] = base.model_dump()
    data.update(
        requests_per_day=summary.requests / summary.days,
        input_tokens={"mean": input_mean, "p95": input_mean * base.input_tokens.p95 / base.input_tokens.mean},
        output_tokens={"mean": output_mean, "p95": output_mean * base.output_tokens.p95 / base.output_tokens.mean},
        hourly_weights=weights,
        peak_to_average=None,
    )
    if base.hybrid is not None:
        data["hybrid"] = _measured_mix(base.hybrid, rows).model_dump()
    return Profile.model_validate(data)


def _measured_mix(mix: HybridMix, rows: Sequence[HourlyAggregate]) -> HybridMix:
    """Cache hit rate and tier shares as served. A ledger row belongs to the profile tier whose name or
    `cost_ranks` match its cost_rank; traffic on any other rank is counted on the premium tier (priced at the
    premium API: the conservative reading)."""
    hits = sum(r.cache_hits for r in rows)
    total = sum(r.requests for r in rows)
    premium = next((t.name for t in mix.tiers if t.option == f"api:{mix.premium_api}"), mix.tiers[-1].name)
    served = dict.fromkeys((t.name for t in mix.tiers), 0)
    for r in rows:
        served[_tier_for(r.tier, mix.tiers, premium)] += max(0, r.requests - r.cache_hits)
    missed = sum(served.values())
    tiers = [t.model_copy(update={"share": served[t.name] / missed if missed else t.share}) for t in mix.tiers]
    return HybridMix.model_validate(
        {**mix.model_dump(), "cache_hit_rate": hits / total, "tiers": [t.model_dump() for t in tiers]}
    )


def _tier_for(ledger_tier: str, tiers: Sequence[HybridTier], premium: str) -> str:
    for tier in tiers:
        if ledger_tier == tier.name or ledger_tier in {str(rank) for rank in tier.cost_ranks}:
            return tier.name
    return premium
