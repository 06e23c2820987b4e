"""Stages ② and ⑤ made durable: before an attempt goes upstream, its reservation and an in-flight
record of it are where a successor can find them if this replica dies.

- at admission, the reservation goes to the counter store with an intent (atomically, by the
  limiter) and to the local journal (`req`);
- before each upstream attempt, a mark goes to the shared intent (Redis: one round trip, so that a
  surviving replica can write the attempt's row) and to the journal (`att`, one write());
- the ledger sink journals the request's rows and ends it there; the limiter's settle marks it.

A replica killed at any point leaves enough for margin.pipeline.recovery (its successor on the same
data dir) or margin.budgets.sweeper (any surviving replica) to settle the reservation as spent and
write one `unreconciled` row per attempt that went upstream. See docs/ledger.md.
"""

from __future__ import annotations

import json
from typing import Any

from margin.budgets.admission import IntentNote, Limiter, Ticket
from margin.budgets.estimate import Demand
from margin.ledger.journal import Journal
from margin.ledger.unreconciled import attempt_mark, row_fields
from margin.pipeline.context import RequestContext
from margin.types import Attempt


def fields_of(ctx: RequestContext) -> dict[str, Any]:
    """The ledger row fields known once a request is routed."""
    return row_fields(ts=ctx.wall_started, **ctx.ledger_columns())


class DurableIntents:
    def __init__(self, journal: Journal | None, limiter: Limiter | None) -> None:
        self.journal = journal
        self.limiter = limiter
        if limiter is not None:
            limiter.on_settled.append(self._settled)

    @property
    def active(self) -> bool:
        return self.journal is not None and self.journal.is_open

    def note(self, ctx: RequestContext) -> IntentNote | None:
        """What the limiter records with the reservation; None when nothing is made durable (no
        journal running: an app used without its lifespan)."""
        return IntentNote(ctx.request_id, fields_of(ctx)) if self.active else None

    def reserved(self, ctx: RequestContext, ticket: Ticket, note: IntentNote | None, demand: Demand) -> None:
        """Journal the reservation (once per request) before anything goes upstream."""
        if note is None or self.journal is None or not self.active:
            return
        counters = [c.as_json() for c in ticket.counters()]
        reservation = {"counters": counters, "cost_nano": demand.cost_nano, "tokens": demand.tokens}
        record = {"row": note.row, "res": reservation, "intent": ticket.intent is not None}
        self.journal.begin(ctx.request_id, record, reserved=ticket.intent is not None)

    async def attempt_started(self, ctx: RequestContext, attempt: Attempt) -> None:
        """Called by the call stage between `Attempt` creation and the upstream call."""
        if not self.active:
            return
        assert self.journal is not None
        started = ctx.wall_started + (attempt.started_at - ctx.started)
        mark = attempt_mark(
            index=attempt.index,
            deployment=attempt.deployment,
            model=attempt.model,
            cost_rank=attempt.cost_rank,
            ts=started,
        )
        ticket = ctx.reservation
        if isinstance(ticket, Ticket) and self.limiter is not None:
            await self.limiter.mark_attempt(ticket, attempt.index, json.dumps(mark, separators=(",", ":")))
        if not self.journal.started(ctx.request_id):
            self.journal.begin(ctx.request_id, {"row": fields_of(ctx), "res": None}, reserved=False)
        self.journal.attempt(ctx.request_id, mark)

    def ended(self, request_id: str) -> None:
        """The request's rows are journaled (the ledger sink calls this after handing them over)."""
        if self.journal is not None and self.active:
            self.journal.ended(request_id)

    async def _settled(self, ticket: Ticket) -> None:
        if ticket.intent is not None and self.journal is not None and self.active:
            self.journal.settled(ticket.intent.request_id)
