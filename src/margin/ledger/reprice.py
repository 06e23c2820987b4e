"""`margin reprice`: recompute stored costs from the stored usage with the current prices.

Each row is priced as the meter would price it now: through the PriceBook (the deployment's own
config price, or the catalog entry of its model) when the deployment still serves the row's model,
else by the catalog entry of the row's model. Rows are left as they are, and counted, when:
- no price is known now (`unpriced`): a missing price never turns a stored cost into zero;
- they were priced by GPU time (`price_basis == "gpu_time"`): the ledger does not keep GPU-seconds;
- they are cache hits: they cost nothing, and their `saved_cost` is a counterfactual (kept as priced
  at the time of the hit: a hit row keeps no usage to price again);
- they are `unreconciled` (an attempt whose replica died before its usage was known): their cost is
  the reserved amount, not a price of usage; `margin reconcile` corrects them.
- they are `refused` (margin's own limit refused the request: nothing was used, nothing to price).

Rows of tiered routes also get their `routing_savings` (all-premium counterfactual - spend) again:
the answering row prices its usage on the premium deployment it names (`extra["counterfactual"]`)
at today's price, overhead rows (rejected cascade answers, failed attempts, verifier calls) save
minus their new cost. If the premium deployment has no price now, the stored counterfactual stays.

Changed rows and their rollups are updated together by the store, a batch at a time; one audit
entry records who, when, the window, the old and new totals and the price versions involved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal

from margin.ledger.unreconciled import UNRECONCILED
from margin.metering.catalog import PriceCatalog
from margin.metering.pricebook import PriceBook
from margin.metering.pricing import price_usage
from margin.storage.ledger_row import LedgerRow
from margin.storage.ledger_schema import quantize_money
from margin.storage.protocols import AuditEntry, CostChange, LedgerStore
from margin.storage.rollups import CACHE_HITS
from margin.types import Cost, Usage


@dataclass(slots=True)
class RepriceResult:
    rows_scanned: int = 0
    rows_changed: int = 0
    rows_unpriced: int = 0
    rows_skipped: int = 0  # GPU-time priced, cache hits or unreconciled
    old_total: Decimal = Decimal(0)
    new_total: Decimal = Decimal(0)
    old_versions: set[str] = field(default_factory=set)
    new_versions: set[str] = field(default_factory=set)
    audit: AuditEntry | None = None


def row_usage(row: LedgerRow) -> Usage:
    return Usage(
        input_uncached=row.input_uncached,
        input_cache_read=row.input_cache_read,
        input_cache_write=row.input_cache_write,
        output=row.output,
        output_reasoning=row.output_reasoning,
        input_audio=row.input_audio,
        output_audio=row.output_audio,
        input_image=row.input_image,
        source="estimated" if row.usage_source == "estimated" else "reported",
    )


def current_cost(row: LedgerRow, book: PriceBook, catalog: PriceCatalog) -> Cost | None:
    """The row's cost at today's prices, or None when no price is known."""
    usage = row_usage(row)
    if row.deployment in book.token_prices and book.models.get(row.deployment) == row.model:
        return book.cost(row.deployment, usage, batch=row.batch)
    price = catalog.lookup(row.model)
    return None if price is None else price_usage(usage, price, batch=row.batch)


def cost_change(row: LedgerRow, cost: Cost, routing_savings: Decimal | None = None) -> CostChange | None:
    """The change to store, or None when the stored costs (and routing savings) already match."""
    costs = {f"cost_{bucket}": quantize_money(amount) for bucket, amount in cost.buckets().items()}
    total = quantize_money(cost.total.usd)
    same_money = total == row.cost_total and all(getattr(row, name) == amount for name, amount in costs.items())
    savings = None if routing_savings is None else quantize_money(routing_savings)
    same_savings = savings is None or savings == row.routing_savings
    if same_money and same_savings and cost.price_version == row.price_version and not row.price_unknown:
        return None
    return CostChange(row.attempt_id, costs, total, cost.price_version, cost.basis, cost.price_unknown, savings)


def routing_savings(row: LedgerRow, new_total: Decimal, book: PriceBook) -> Decimal | None:
    """The row's share of (all-premium counterfactual - spend) at today's prices; None when the row
    is not part of a tiered route."""
    priced_by = row.extra.get("counterfactual")
    if priced_by is None:
        return None
    if priced_by == "none":
        return -new_total
    if priced_by not in book.token_prices:
        return row.cost_total + row.routing_savings - new_total  # the stored counterfactual stands
    counterfactual = book.cost(priced_by, row_usage(row), batch=row.batch)
    return counterfactual.total.usd - new_total


async def reprice_ledger(
    store: LedgerStore,
    book: PriceBook,
    catalog: PriceCatalog,
    *,
    since: float,
    until: float,
    actor: str,
    dry_run: bool = False,
    batch_size: int = 500,
) -> RepriceResult:
    """Reprice rows with since <= ts < until; with `dry_run` nothing is written."""
    result = RepriceResult()
    pending: list[CostChange] = []
    async for row in store.query_rows(since, until, page_size=batch_size):
        result.rows_scanned += 1
        result.old_total += row.cost_total
        change = _change_for(row, book, catalog, result)
        result.new_total += row.cost_total if change is None else change.cost_total
        if change is None:
            continue
        result.rows_changed += 1
        result.old_versions.add(row.price_version)
        result.new_versions.add(change.price_version)
        pending.append(change)
        if len(pending) >= batch_size and not dry_run:
            await store.update_costs(pending)
            pending = []
    if dry_run:
        return result
    if pending:
        await store.update_costs(pending)
    result.audit = _audit_entry(result, catalog, actor=actor, since=since, until=until)
    await store.record_audit(result.audit)
    return result


def _change_for(row: LedgerRow, book: PriceBook, catalog: PriceCatalog, result: RepriceResult) -> CostChange | None:
    if row.price_basis in ("gpu_time", UNRECONCILED) or row.cache_result in CACHE_HITS or row.status == "refused":
        result.rows_skipped += 1
        return None
    cost = current_cost(row, book, catalog)
    if cost is None or cost.price_unknown:
        result.rows_unpriced += 1
        return None
    return cost_change(row, cost, routing_savings(row, quantize_money(cost.total.usd), book))


def _audit_entry(result: RepriceResult, catalog: PriceCatalog, *, actor: str, since: float, until: float) -> AuditEntry:
    return AuditEntry(
        action="reprice",
        actor=actor,
        at=time.time(),
        since=since,
        until=until,
        rows_scanned=result.rows_scanned,
        rows_changed=result.rows_changed,
        old_total=result.old_total,
        new_total=result.new_total,
        price_versions={
            "old": sorted(result.old_versions),
            "new": sorted(result.new_versions),
            "catalog": [catalog.version],
        },
        detail={"rows_unpriced": str(result.rows_unpriced), "rows_skipped": str(result.rows_skipped)},
    )
