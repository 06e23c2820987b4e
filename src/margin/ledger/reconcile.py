"""`margin reconcile`: find the ledger rows of attempts whose outcome nobody knew (their replica died
while they were upstream) and correct each to what it actually cost, with an audit entry.

An `unreconciled` row carries the request's reserved worst case (margin.ledger.unreconciled). The
actual figures come from the provider: OpenAI's and Anthropic's usage APIs report per minute and
model, not per request, so the operator reads them there (or in the upstream server's own logs for
a self-hosted model) and gives them here: token counts, priced like any other row (the
deployment's price, else the catalog's for the model), or an amount. Accepting the reserved amount
as final is a decision too, recorded the same way.

The row's cost columns and price basis (`reconciled`) change with its rollups, in one store
transaction (`LedgerStore.update_costs`); its status stays `unreconciled`, for the record of what
happened to the request. The usage given is kept in the audit entry (the row's token columns are
not rewritten). The budget counters keep the reserved amount for the window: a reconciled row
never lowers what a budget already counted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from decimal import Decimal

from margin.ledger.reprice import current_cost
from margin.ledger.unreconciled import UNRECONCILED
from margin.metering.catalog import PriceCatalog
from margin.metering.pricebook import PriceBook
from margin.storage.ledger_row import COST_COLUMNS, LedgerRow
from margin.storage.ledger_schema import quantize_money
from margin.storage.protocols import AuditEntry, CostChange, LedgerStore
from margin.types import Usage

RECONCILED = "reconciled"


class ReconcileError(ValueError):
    """The correction asked for cannot be made (no such row, no price for the usage given)."""


@dataclass(frozen=True, slots=True)
class Actual:
    """What an attempt really cost: its usage (priced here), or an amount; neither: the reserved one."""

    usage: Usage | None = None
    cost_usd: Decimal | None = None


async def unreconciled_rows(store: LedgerStore, since: float, until: float) -> list[LedgerRow]:
    """Rows still at their reserved amount, oldest first."""
    return [row async for row in store.query_rows(since, until) if row.price_basis == UNRECONCILED]


async def reconcile(
    store: LedgerStore, book: PriceBook, catalog: PriceCatalog, row: LedgerRow, actual: Actual, *, actor: str,
    note: str = "",
) -> AuditEntry:  # fmt: skip
    """Correct one unreconciled row to `actual`; returns the audit entry it recorded."""
    if row.price_basis != UNRECONCILED:
        raise ReconcileError(f"{row.attempt_id} is not unreconciled (price basis {row.price_basis!r})")
    change = _change(row, actual, book, catalog)
    await store.update_costs([change])
    entry = AuditEntry(
        action="reconcile",
        actor=actor,
        at=time.time(),
        since=row.ts,
        until=row.ts,
        rows_scanned=1,
        rows_changed=1,
        old_total=row.cost_total,
        new_total=change.cost_total,
        price_versions={"new": [change.price_version]},
        detail={
            "attempt_id": row.attempt_id,
            "request_id": row.request_id,
            "deployment": row.deployment,
            "reserved_usd": row.extra.get("reserved_usd", ""),
            "usage": json.dumps(_usage_fields(actual.usage), sort_keys=True) if actual.usage else "",
            "basis": "usage" if actual.usage else "amount" if actual.cost_usd is not None else "reserved",
            "note": note,
        },
    )
    await store.record_audit(entry)
    return entry


def _change(row: LedgerRow, actual: Actual, book: PriceBook, catalog: PriceCatalog) -> CostChange:
    zero = dict.fromkeys(COST_COLUMNS, Decimal(0))
    if actual.usage is None:
        total = row.cost_total if actual.cost_usd is None else actual.cost_usd
        return CostChange(row.attempt_id, zero, quantize_money(total), "operator", RECONCILED, False)
    usage = actual.usage
    priced = replace(row, input_uncached=usage.input_uncached, input_cache_read=usage.input_cache_read,
                     input_cache_write=usage.input_cache_write, output=usage.output,
                     output_reasoning=usage.output_reasoning)  # fmt: skip
    cost = current_cost(priced, book, catalog)
    if cost is None or cost.price_unknown:
        raise ReconcileError(f"no price known for {row.deployment} / {row.model}: give the amount instead")
    costs = {f"cost_{bucket}": quantize_money(amount) for bucket, amount in cost.buckets().items()}
    return CostChange(row.attempt_id, costs, quantize_money(cost.total.usd), cost.price_version, RECONCILED, False)


def _usage_fields(usage: Usage | None) -> dict[str, int]:
    if usage is None:
        return {}
    names = ("input_uncached", "input_cache_read", "input_cache_write", "output", "output_reasoning")
    return {name: getattr(usage, name) for name in names}
