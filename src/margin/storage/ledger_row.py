"""One ledger row per upstream attempt (and one per cache hit), linked by request id.

A request's billed cost is the sum of its rows. Money columns are exact Decimals; storage backends
keep them exact (TEXT in SQLite, NUMERIC in PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, TypedDict

from margin.types import COST_BUCKETS, USAGE_BUCKETS, Principal

CacheResult = Literal["none", "miss", "exact", "semantic", "coalesced"]
# unreconciled: the attempt went upstream and its replica died before its outcome was known; the row
# carries the reserved amount until `margin reconcile` corrects it (price_basis "unreconciled").
# refused: a request margin's own budget or rate limit refused before any upstream call; its one row
# costs 0, names no deployment, and its error_class is the error code the client got (REFUSAL_CODES).
RowStatus = Literal["ok", "error", "cancelled", "unreconciled", "refused"]
BUDGET_REFUSED, RATE_LIMIT_REFUSED = "budget_exceeded", "rate_limit_exceeded"
REFUSAL_CODES = (BUDGET_REFUSED, RATE_LIMIT_REFUSED)

USAGE_COLUMNS = USAGE_BUCKETS  # a row's token columns are named as the usage buckets
COST_COLUMNS = tuple(f"cost_{b}" for b in COST_BUCKETS)


@dataclass(frozen=True, slots=True)
class LedgerRow:
    attempt_id: str  # f"{request_id}:{attempt_index}": the idempotency key of replays
    request_id: str
    attempt_index: int
    ts: float  # UTC epoch seconds when the attempt started
    endpoint: str  # chat | completions | embeddings | messages | batch
    # who
    key_id: str
    org: str
    team: str
    user: str
    tags: tuple[str, ...]
    endpoint_class: str  # interactive | batch
    # where
    model_group: str
    route_policy: str
    tier: int | None
    deployment: str
    model: str
    fallback_index: int  # 0 for the first deployment tried, 1 for the first fallback...
    is_final: bool  # the attempt whose answer the client received
    # outcome
    status: RowStatus
    error_class: str | None
    latency_ms: float
    ttft_ms: float | None
    tokens_per_s: float | None
    # usage (disjoint buckets) and where it came from
    input_uncached: int = 0
    input_cache_read: int = 0
    input_cache_write: int = 0
    output: int = 0
    output_reasoning: int = 0
    input_audio: int = 0
    output_audio: int = 0
    input_image: int = 0
    usage_source: str = "reported"  # reported | estimated | none
    # money
    cost_input_uncached: Decimal = Decimal(0)
    cost_input_cache_read: Decimal = Decimal(0)
    cost_input_cache_write: Decimal = Decimal(0)
    cost_output: Decimal = Decimal(0)
    cost_output_reasoning: Decimal = Decimal(0)
    cost_input_audio: Decimal = Decimal(0)
    cost_output_audio: Decimal = Decimal(0)
    cost_input_image: Decimal = Decimal(0)
    cost_gpu_time: Decimal = Decimal(0)
    cost_total: Decimal = Decimal(0)
    price_version: str = ""
    price_basis: str = "catalog"  # catalog | unknown | declared_zero | gpu_time | none | unreconciled | reconciled
    price_unknown: bool = False
    batch: bool = False
    # caching
    cache_result: CacheResult = "none"
    saved_cost: Decimal = Decimal(0)  # counterfactual cost a cache hit avoided
    extra: dict[str, str] = field(default_factory=dict)
    # tiered routing: this row's share of (all-premium counterfactual - actual spend); 0 when untiered
    routing_savings: Decimal = Decimal(0)
    # the usage buckets holding margin's estimate, comma-separated in USAGE_COLUMNS order; "" when every
    # figure was reported (usage_source "estimated" with "output" here: the input was reported)
    estimated_buckets: str = ""


class RequestColumns(TypedDict):
    """The columns every row of one request shares: who asked and the route it took (known once the
    request is routed). Attempt rows, refusal rows, cache-hit rows and the durable intent all start
    from these (`request_columns`), so a new "who" or "where" column is added in one place."""

    request_id: str
    endpoint: str
    key_id: str
    org: str
    team: str
    user: str
    tags: tuple[str, ...]
    endpoint_class: str
    model_group: str
    route_policy: str


def request_columns(
    request_id: str, endpoint: str, principal: Principal, *, model_group: str, route_policy: str
) -> RequestColumns:
    return RequestColumns(
        request_id=request_id,
        endpoint=endpoint,
        key_id=principal.key_id,
        org=principal.org,
        team=principal.team,
        user=principal.user,
        tags=principal.tags,
        endpoint_class=principal.endpoint_class,
        model_group=model_group,
        route_policy=route_policy,
    )


def unattempted_row(
    columns: RequestColumns,
    *,
    ts: float,
    status: RowStatus,
    latency_ms: float,
    error_class: str | None = None,
    deployment: str = "",
    model: str = "",
    price_version: str = "",
    price_basis: str = "none",
    cache_result: CacheResult = "none",
    saved_cost: Decimal = Decimal(0),
    extra: dict[str, str] | None = None,
) -> LedgerRow:
    """The one row of a request that no upstream attempt answered (a refusal, a cache hit): attempt
    0, final, no usage, no tier and no upstream timings."""
    return LedgerRow(
        **columns,
        attempt_id=f"{columns['request_id']}:0",
        attempt_index=0,
        ts=ts,
        tier=None,
        deployment=deployment,
        model=model,
        fallback_index=0,
        is_final=True,
        status=status,
        error_class=error_class,
        latency_ms=latency_ms,
        ttft_ms=None,
        tokens_per_s=None,
        usage_source="none",
        price_version=price_version,
        price_basis=price_basis,
        cache_result=cache_result,
        saved_cost=saved_cost,
        extra={} if extra is None else extra,
    )
