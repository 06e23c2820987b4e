"""Stage ⑦'s data: a finished request as ledger rows: one per upstream attempt, each with its own usage and cost."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import TypedDict

from margin.pipeline.context import RequestContext
from margin.pipeline.route_labels import decision_extra, row_extra, row_savings
from margin.storage.ledger_row import LedgerRow
from margin.types import Attempt, Cost, Usage


def rows_for(ctx: RequestContext, *, overhead_ms: float | None = None) -> list[LedgerRow]:
    """The request's rows; its last row (the answering one, when there is one) carries the
    request's `overhead_ms` in `extra` (the gateway's own time, arrival to last byte written) and
    the routing, fallback and cache decision its response headers carried (`decision_extra`)."""
    timing = {"overhead_ms": f"{overhead_ms:.3f}"} if overhead_ms is not None else {}
    if ctx.cache_row is not None:  # a cache hit: cost 0, with the saved cost; no upstream attempt
        row = ctx.cache_row
        return [replace(row, extra={**row.extra, **decision_extra(ctx), **timing})]
    final = len(ctx.attempts) - 1 if ctx.deployment else -1
    last = len(ctx.attempts) - 1
    return [
        # The last row's extra is built whole: no second LedgerRow through dataclasses.replace.
        _row(ctx, attempt, is_final=i == final, more_extra={**decision_extra(ctx), **timing} if i == last else None)
        for i, attempt in enumerate(ctx.attempts)
    ]


def _row(
    ctx: RequestContext, attempt: Attempt, *, is_final: bool, more_extra: dict[str, str] | None = None
) -> LedgerRow:
    usage = attempt.usage or Usage()
    cost = attempt.cost
    seconds = attempt.latency_ms / 1000
    ttft = attempt.ttft_ms / 1000 if attempt.ttft_ms is not None else 0.0
    generating = seconds - ttft
    return LedgerRow(
        **ctx.ledger_columns(),
        attempt_id=f"{ctx.request_id}:{attempt.index}",
        attempt_index=attempt.index,
        ts=ctx.wall_started + (attempt.started_at - ctx.started),
        tier=attempt.cost_rank,  # the ledger's `tier` column holds the cost_rank
        deployment=attempt.deployment,
        model=attempt.model,
        fallback_index=attempt.index,
        is_final=is_final,
        status=attempt.status,
        error_class=attempt.error_class,
        latency_ms=attempt.latency_ms,
        ttft_ms=attempt.ttft_ms,
        tokens_per_s=usage.output_total / generating if usage.output_total and generating > 0 else None,
        input_uncached=usage.input_uncached,
        input_cache_read=usage.input_cache_read,
        input_cache_write=usage.input_cache_write,
        output=usage.output,
        output_reasoning=usage.output_reasoning,
        input_audio=usage.input_audio,
        output_audio=usage.output_audio,
        input_image=usage.input_image,
        usage_source=usage.source if attempt.usage is not None else "none",
        estimated_buckets=",".join(usage.estimated) if attempt.usage is not None else "",
        **_money(cost),
        extra=row_extra(ctx, attempt, is_final=is_final)
        if more_extra is None
        else {**row_extra(ctx, attempt, is_final=is_final), **more_extra},
        routing_savings=row_savings(ctx, attempt, is_final=is_final),
    )


class _MoneyColumns(TypedDict, total=False):
    cost_input_uncached: Decimal
    cost_input_cache_read: Decimal
    cost_input_cache_write: Decimal
    cost_output: Decimal
    cost_output_reasoning: Decimal
    cost_input_audio: Decimal
    cost_output_audio: Decimal
    cost_input_image: Decimal
    cost_gpu_time: Decimal
    cost_total: Decimal
    price_version: str
    price_basis: str
    price_unknown: bool
    batch: bool


def _money(cost: Cost | None) -> _MoneyColumns:
    if cost is None:
        return {"price_basis": "none"}
    return {
        "cost_input_uncached": cost.input_uncached,
        "cost_input_cache_read": cost.input_cache_read,
        "cost_input_cache_write": cost.input_cache_write,
        "cost_output": cost.output,
        "cost_output_reasoning": cost.output_reasoning,
        "cost_input_audio": cost.input_audio,
        "cost_output_audio": cost.output_audio,
        "cost_input_image": cost.input_image,
        "cost_gpu_time": cost.gpu_time,
        "cost_total": cost.total.usd,
        "price_version": cost.price_version,
        "price_basis": cost.basis,
        "price_unknown": cost.basis == "unknown",
        "batch": cost.batch,
    }
