"""Cache hits in the ledger: a row with cost 0 and the counterfactual cost the hit saved, priced
at today's price of the deployment that originally produced the answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from margin.caching.coalesce import Flight
from margin.caching.entry import CachedAnswer
from margin.metering.pricebook import PriceBook
from margin.storage.ledger_row import LedgerRow, RequestColumns, unattempted_row
from margin.types import Cost

HitKind = Literal["exact", "semantic", "coalesced"]
CACHE_DEPLOYMENT = "cache"  # the `deployment` of hit rows: no upstream was called
CACHE_PRICE_VERSION = "cache-hit"


@dataclass(slots=True)
class CacheHit:
    """A served-from-cache answer. `answer` is None only while a coalesced stream is still
    arriving; it is set when the replay ends, before the request is recorded."""

    kind: HitKind
    key: str
    answer: CachedAnswer | None
    similarity: float | None = None
    matched_question: str | None = None
    flight: Flight | None = field(default=None, repr=False)


def zero_cost(answer: CachedAnswer | None) -> Cost:
    """What the client pays for a hit."""
    return Cost(price_version=CACHE_PRICE_VERSION, model=answer.model if answer else "", basis="declared_zero")


def saved_cost(prices: PriceBook | None, answer: CachedAnswer | None) -> Decimal:
    """The cost the upstream call would have had (0 when usage or the price is unknown)."""
    if prices is None or answer is None or answer.usage is None:
        return Decimal(0)
    cost = prices.cost(answer.deployment, answer.usage)
    return Decimal(0) if cost.basis == "unknown" else cost.total.usd


@dataclass(frozen=True, slots=True)
class HitOrigin:
    """Who asked and through which route: what a hit row needs besides the hit."""

    columns: RequestColumns
    started_wall: float
    latency_ms: float


def hit_ledger_row(origin: HitOrigin, hit: CacheHit, saved: Decimal) -> LedgerRow:
    """One row for a cache hit: zero usage and cost (nothing was called), the saved cost, and the
    tokens the cached answer had in `extra` for hit-rate reports."""
    answer = hit.answer
    usage = answer.usage if answer is not None else None
    extra = {"cache_key": hit.key, "answered_by": answer.deployment if answer else ""}
    if usage is not None:
        extra |= {"cached_input_tokens": str(usage.input_total), "cached_output_tokens": str(usage.output_total)}
    if hit.similarity is not None:
        extra["similarity"] = f"{hit.similarity:.4f}"
    return unattempted_row(
        origin.columns,
        ts=origin.started_wall,
        status="ok",
        latency_ms=origin.latency_ms,
        deployment=CACHE_DEPLOYMENT,
        model=answer.model if answer else "",
        price_version=CACHE_PRICE_VERSION,
        price_basis="declared_zero",
        cache_result=hit.kind,
        saved_cost=saved,
        extra=extra,
    )
