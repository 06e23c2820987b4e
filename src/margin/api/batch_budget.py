"""The budget side of a `native` batch (docs/batch.md, "Budgets"): before the batch goes to the
provider's Batch API, its worst case — the sum over its lines of the reservation the live path
computes for each (prompt tokens counted plus max_tokens, on that deployment), at the deployment's
batch price — is reserved atomically on every budget of its creator (key, user, team, org, tags) by
the same limiter as live requests, and at once recorded as spent: a hold would lapse long before a
24-hour batch ends, a spent amount does not. Once the provider's answers are billed (a ledger row
per line), the counters are corrected to the batch's exact cost and tokens, which returns the rest;
a cancelled, failed or expired batch returns what it did not spend the same way.

The hold is written on the batch row (`native_hold`) in the same step that makes it native, and is
marked settled before the correction is applied: a crash can make margin count a batch's worst case
twice (killed between the reserve and that write; the batch is validated again) or keep its worst
case (killed between the mark and the correction), never count less than was billed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from margin.batch.runner import ENDPOINTS, batch_principal
from margin.budgets.estimate import Demand, nano_ceil
from margin.budgets.intents import HeldCounter
from margin.budgets.rules import NANO
from margin.errors import MarginError
from margin.pipeline.context import RequestContext
from margin.pipeline.handler import Pipeline
from margin.storage.batches import BatchRecord
from margin.types import ChatRequest, EmbeddingRequest

log = logging.getLogger("margin.batch")


# The request the live endpoint builds from a line's body (margin.api.batch_lines.line_request).
LineRequest = Callable[[str, dict[str, Any]], ChatRequest | EmbeddingRequest]


class NativeBudget:
    def __init__(self, pipeline: Pipeline, line_request: LineRequest) -> None:
        self.pipeline, self.line_request = pipeline, line_request

    def worst_case(self, endpoint: str, deployment: str, bodies: list[dict[str, Any]]) -> Demand:
        """The sum of each line's live worst case on `deployment`, at its batch price."""
        limits = self.pipeline.limits
        cost_nano = tokens = 0
        for body in bodies:
            demand = limits.demand(self.line_request(endpoint, body), (deployment,))
            cost_nano += demand.cost_nano
            tokens += demand.tokens
        price = self.pipeline.meter.prices.token_prices.get(deployment)
        multiplier = price.batch_multiplier if price is not None and price.batch_multiplier is not None else None
        if multiplier is not None:
            cost_nano = nano_ceil(Decimal(cost_nano) * multiplier / NANO)
        return Demand(cost_nano=cost_nano, tokens=tokens)

    async def reserve(self, batch: BatchRecord, deployment: str, bodies: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The batch's hold (JSON for its row) once its worst case is charged to every budget of its
        creator; None when it does not fit one of them (or the limits store cannot say)."""
        limits, limiter = self.pipeline.limits, self.pipeline.limits.limiter
        try:
            demand = self.worst_case(batch.endpoint, deployment, bodies)
        except MarginError as exc:  # validated already; a line the live path cannot price runs local
            log.info("batch: %s does not go native: %s", batch.batch_id, exc.message)
            return None
        hold: dict[str, Any] = {"counters": [], "cost_nano": demand.cost_nano, "tokens": demand.tokens,
                                "settled": False}  # fmt: skip
        if limiter is None:
            return hold
        ctx = RequestContext(request_id=f"{batch.batch_id}-native", endpoint=ENDPOINTS[batch.endpoint])
        ctx.principal = batch_principal(batch)
        applied = [a for a in limiter.applicable(ctx.principal, deployment, limits._rules_of(ctx))
                   if a.rule.is_budget]  # fmt: skip
        if not applied:
            return hold
        try:
            ticket = await limiter.reserve(ctx.principal, applied, demand)
        except MarginError as exc:  # over a budget (402), or the store down under fail_closed (503)
            log.info("batch: %s does not go native: its worst case $%s does not fit: %s", batch.batch_id,
                     Decimal(demand.cost_nano) / NANO, exc.message)  # fmt: skip
            return None
        if ticket.store is not limiter.counters:  # admitted by the fail_open fallback: not durable
            limiter.settle(ticket, cost_nano=0, tokens=0)
            log.info("batch: %s does not go native: the limits store is unreachable", batch.batch_id)
            return None
        limiter.settle(ticket, cost_nano=demand.cost_nano, tokens=demand.tokens)  # spent until corrected
        hold["counters"] = [c.as_json() for c in ticket.counters()]
        return hold

    def settle(self, hold: dict[str, Any], cost: Decimal, tokens: int) -> None:
        """Correct the counters charged with the hold to the batch's billed `cost` and `tokens`."""
        limiter = self.pipeline.limits.limiter
        counters = tuple(HeldCounter.from_json(item) for item in hold.get("counters", ()))
        if limiter is None or not counters:
            return
        limiter.correct(counters, cost_nano=nano_ceil(cost), tokens=tokens)
