"""The limiter: one atomic check-and-reserve over every limit that applies to a request, a settle
to the actual amounts afterwards, and the declared policy when the counter store is unreachable.

Reserve, then settle. Budgets (money, tokens) and tokens-per-minute hold the worst case while the
request runs and settle to what it used; requests-per-minute count the request outright;
concurrency holds one slot until the request ends. All of a request's charges go to the store in
one call, which applies all or none, so concurrent requests on any number of replicas can never
together pass a limit that each checked alone.

Store down: a call fails within `redis_timeout_ms`, the store is not tried again for a second, and
meanwhile each request follows its limits' policy: `fail_closed` refuses it (503), `fail_open` checks
it against in-process counters at `fail_open_share` of each limit. Settles that could not be applied
are kept and replayed once the store answers. A store that lost its data (Redis restarted empty)
says so per counter (its sync marker is gone): that budget counter is first raised to the ledger's
figure for its window, once, whichever replica gets there first, then the request is reserved.

Durable intents (stores that outlive the process): a reservation is written with an `Intent` in the
same atomic step, and settled through it exactly once (`finish`). If this replica dies, the intent
is still there for a surviving replica (margin.budgets.sweeper) or this replica's successor (its
journal replay) to settle as spent at the reserved amount: a hold whose outcome is unknown is never
simply left to expire.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from margin import errors
from margin.budgets.estimate import Demand
from margin.budgets.intents import HeldCounter, Reservation, correction_plan, late_plans, settle_plan
from margin.budgets.priority import PriorityQueue
from margin.budgets.refusals import budget_exceeded, limits_unavailable, rate_limited
from margin.budgets.rules import NANO, Applied, Rule, RuleBook
from margin.budgets.windows import Lease, Span, SpanCache
from margin.config.limits import PriorityConfig, StoreFailure
from margin.storage.protocols import (
    Adjust,
    Charge,
    Counters,
    Intent,
    IntentCounters,
    SharedIntents,
    StorageError,
    Verdict,
)
from margin.types import Principal

log = logging.getLogger("margin.limits")
_RETRY_STORE_S = 1.0  # after failures, requests skip the store this long (no one waits on a dead store)
_FAILURES_TO_SKIP = 3  # consecutive failures before skipping: one slow answer under load is not an outage
_MAX_PENDING = 10_000  # settles kept for replay while the store is down
_MAX_SYNCS = 3  # syncs per reservation (each charge needs at most one; bounded all the same)
_MAX_REMEMBERED = 10_000
_EMPTY = Span(start=0.0, first=1, last=0, reset_at=0.0, expires_at=0.0)  # concurrency: no spent window
_KEEP_SWEPT_S = 86_400.0  # an open or swept intent is kept a day: a late settle still corrects it


@dataclass(frozen=True, slots=True)
class Held:
    applied: Applied
    span: Span
    hold: int | None  # lease slot of the hold; None for requests-per-minute (counted outright)
    amount: int
    hold_expires: float


@dataclass(frozen=True, slots=True)
class Ticket:
    """A request's reservation, settled exactly once."""

    held: tuple[Held, ...]
    store: Counters
    # Recorded as an intent in `store` (id: the request id), settled through it; None: plain holds.
    intent: Reservation | None = None

    def counters(self) -> tuple[HeldCounter, ...]:
        return self.intent.counters if self.intent is not None else tuple(_held_counter(h) for h in self.held)


def _held_counter(held: Held) -> HeldCounter:
    rule = held.applied.rule
    return HeldCounter(held.applied.name, rule.kind, held.hold, held.amount, held.hold_expires, held.span.last,
                       held.span.expires_at)  # fmt: skip


@dataclass(frozen=True, slots=True)
class IntentNote:
    """What the pipeline tells the limiter about a request so that its reservation can be settled
    without it: its id and the ledger row fields known at admission."""

    request_id: str
    row: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Policy:
    default_failure: StoreFailure = "fail_closed"
    fail_open_share: float = 0.1
    budget_status: int = 402
    priority: PriorityConfig = field(default_factory=PriorityConfig)


Clock = Callable[[], float]
LedgerAmount = Callable[[Applied, Span], Coroutine[Any, Any, int]]  # raises StorageError when unknown


async def _nothing_recorded(applied: Applied, span: Span) -> int:
    return 0


class Limiter:
    def __init__(
        self,
        rules: RuleBook,
        counters: Counters,
        *,
        lease: Lease,
        policy: Policy = Policy(),
        clock: Clock = time.time,
        fallback: Counters,
    ) -> None:
        self.rules = rules
        self.counters = counters
        self.lease = lease
        self.policy = policy
        self.clock = clock
        self.fallback = fallback  # in-process counters for fail_open (the composition root picks them)
        self.queue = PriorityQueue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.pending: list[Callable[[], Coroutine[Any, Any, bool]]] = []  # settles to replay
        self.owner = "-"  # this replica's id in intents (the composition root sets the journal's)
        self.keeps_intents = isinstance(counters, IntentCounters)
        self.shares_intents = isinstance(counters, SharedIntents)
        self.ledger_amount: LedgerAmount = _nothing_recorded  # set by the upkeep when there is a ledger
        self.on_settled: list[Callable[[Ticket], Coroutine[Any, Any, None]]] = []
        self.on_refused: list[Callable[[Held, int], None]] = []
        self._syncing: dict[tuple[str, int], asyncio.Future[None]] = {}
        self._spans = SpanCache()
        self._applicable: dict[tuple[Principal, str | None, tuple[Rule, ...]], list[Applied]] = {}
        self._down_until = float("-inf")
        self._failures = 0
        self._was_down = False

    def replace_rules(self, rules: RuleBook) -> None:
        """Swap in new rules (teams, budgets and rate limits changed live): requests admitted from now
        on match them; reservations in flight keep their counters and settle there."""
        self.rules = rules
        self._applicable = {}

    async def catch_up(self, applied: Applied) -> None:
        """Raise a budget counter to the ledger's figure for its current window (never lower it): a
        budget created mid-window counts what its scope spent since the window began. Raises
        StorageError when the ledger or the counters cannot say."""
        window = applied.rule.window
        if window is None or not applied.rule.is_budget:
            return
        span = self._spans.span(window, self.clock())
        floor = await self.ledger_amount(applied, span)
        await self.counters.sync(applied.name, span.first, span.last, floor, span.expires_at)

    # --- reserve ----------------------------------------------------------------------------------

    def applicable(self, principal: Principal, deployment: str | None, extra: tuple[Rule, ...]) -> list[Applied]:
        """The limits on a request; remembered per principal, deployment and key rules (few distinct)."""
        key = (principal, deployment, extra)
        found = self._applicable.get(key)
        if found is None:
            found = self.rules.match(principal, deployment) if self.rules else []
            found.extend(Applied(rule, rule.scope) for rule in extra)
            if len(self._applicable) >= _MAX_REMEMBERED:
                self._applicable.clear()
            self._applicable[key] = found
        return found

    async def reserve(
        self, principal: Principal, applied: list[Applied], demand: Demand, note: IntentNote | None = None
    ) -> Ticket:
        """Charge every applied limit at once; raises the refusal of the first that does not fit.
        With a `note` and a store that keeps intents, the reservation is recorded durably with it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.priority.queue_timeout_s
        cls = principal.endpoint_class
        while True:
            now = self.clock()
            held = self._held(applied, demand, cls, now)
            reservation = self._reservation(held, demand, note) if note is not None and self.keeps_intents else None
            intent = self._intent(reservation, now) if reservation is not None else None
            store, verdict = await self._reserve(held, intent)
            if verdict.failed is None:
                return Ticket(tuple(held), store, reservation if store is self.counters else None)
            failed = held[verdict.failed]
            remaining = deadline - loop.time()
            if failed.applied.rule.kind != "concurrency" or remaining <= 0:
                raise self._refusal(failed, verdict.used, now)
            await self.queue.wait(cls, min(remaining, self.policy.priority.poll_ms / 1000))
            while cls == "batch" and self.queue.interactive_waiting() and deadline > loop.time():
                await self.queue.wait(cls, min(deadline - loop.time(), self.policy.priority.poll_ms / 1000))

    def _held(self, applied: list[Applied], demand: Demand, cls: str, now: float) -> list[Held]:
        """One Held per counter: two rules on one counter (e.g. `key:*` and the key's own) keep the lower limit."""
        slot = self.lease.slot(now)
        by_name: dict[str, Held] = {}
        for item in applied:
            rule = item.rule
            limit = rule.limit
            if rule.kind == "concurrency" and cls == "batch":
                limit = math.floor(limit * self.policy.priority.batch_share)
            seen = by_name.get(item.name)
            if seen is not None and seen.applied.rule.limit <= limit:
                continue
            kind = rule.kind
            amount = demand.cost_nano if kind == "usd" else demand.tokens if kind in ("tokens", "tpm") else 1
            span = self._spans.span(rule.window, now) if rule.window is not None else _EMPTY
            bound = replace(item, rule=replace(rule, limit=limit)) if limit != rule.limit else item
            hold = None if rule.kind == "rpm" else slot
            by_name[item.name] = Held(bound, span, hold, amount, self.lease.expires_at(slot))
        return list(by_name.values())

    @staticmethod
    def _charge(held: Held, share: float = 1.0) -> Charge:
        rule = held.applied.rule
        limit = rule.limit if share >= 1 else math.floor(rule.limit * share)
        expires = held.span.expires_at if held.hold is None else held.hold_expires
        sync = rule.is_budget and share >= 1
        name = held.applied.name
        return Charge(name, held.span.first, held.span.last, held.hold, held.amount, limit, expires, sync)

    @staticmethod
    def _reservation(held: list[Held], demand: Demand, note: IntentNote) -> Reservation:
        counters = tuple(_held_counter(h) for h in held)
        return Reservation(note.request_id, counters, demand.cost_nano, demand.tokens, note.row)

    def _intent(self, reservation: Reservation, now: float) -> Intent:
        sweep_at = self.lease.sweep_at(now)
        return Intent(reservation.request_id, self.owner, sweep_at, sweep_at + _KEEP_SWEPT_S, reservation.to_json())

    async def _shared(self, held: list[Held], intent: Intent | None) -> Verdict:
        charges = [self._charge(h) for h in held]
        verdict = await self._reserve_on_store(charges, intent)
        for _ in range(_MAX_SYNCS):
            if verdict.unsynced is None:
                break
            await self._sync(held[verdict.unsynced])
            verdict = await self._reserve_on_store(charges, intent)
        return verdict

    async def _reserve_on_store(self, charges: list[Charge], intent: Intent | None) -> Verdict:
        if intent is None:
            return await self.counters.reserve(charges)
        assert isinstance(self.counters, IntentCounters)
        return await self.counters.reserve_intent(charges, intent)

    async def _sync(self, lost: Held) -> None:
        """One ledger query per counter and window on this replica, however many requests wait on it."""
        key = (lost.applied.name, lost.span.last)
        running = self._syncing.get(key)
        if running is None:
            running = asyncio.ensure_future(self._sync_once(lost))
            self._syncing[key] = running
            running.add_done_callback(lambda _: self._syncing.pop(key, None))
        await asyncio.shield(running)

    async def _sync_once(self, lost: Held) -> None:
        floor = await self.ledger_amount(lost.applied, lost.span)
        await self.counters.sync(lost.applied.name, lost.span.first, lost.span.last, floor, lost.span.expires_at)
        log.info("budget counter %s synced with the ledger's figure for its window", lost.applied.name)

    async def _reserve(self, held: list[Held], intent: Intent | None) -> tuple[Counters, Verdict]:
        if asyncio.get_running_loop().time() >= self._down_until:
            try:
                verdict = await self._shared(held, intent)
            except StorageError as exc:
                self._down(exc)
            else:
                self._up()
                return self.counters, verdict
        if any(self._failure_policy(h.applied.rule) == "fail_closed" for h in held):
            raise limits_unavailable()
        share = self.policy.fail_open_share
        return self.fallback, await self.fallback.reserve([self._charge(h, share) for h in held])

    def _failure_policy(self, rule: Rule) -> StoreFailure:
        return rule.on_store_failure or self.policy.default_failure

    def _refusal(self, held: Held, used: int, now: float) -> errors.MarginError:
        if held.applied.rule.is_budget:
            for hook in self.on_refused:
                hook(held, used)
            return budget_exceeded(held.applied, used, held.span.reset_at, self.policy.budget_status)
        reset = held.span.reset_at if held.applied.rule.window is not None else now + 1
        return rate_limited(held.applied, used, reset, now)

    # --- store health -------------------------------------------------------------------------------

    def _down(self, exc: StorageError) -> None:
        self._failures += 1
        if not self._was_down:
            log.error("limits store unreachable (%s): applying the declared failure policy", exc)
        self._was_down = True
        if self._failures >= _FAILURES_TO_SKIP:
            self._down_until = asyncio.get_running_loop().time() + _RETRY_STORE_S

    def _up(self) -> None:
        self._failures = 0
        if self._was_down:
            self._was_down = False
            log.warning("limits store reachable again: replaying %d settles", len(self.pending))
            self.spawn(self._recover())

    async def _recover(self) -> None:
        pending, self.pending = self.pending, []
        for retry in pending:
            await retry()

    # --- settle -------------------------------------------------------------------------------------

    def settle(self, ticket: Ticket, *, cost_nano: int, tokens: int) -> None:
        """Release the holds and record what the request used; applied in the background."""
        self.spawn(self._settle(ticket, cost_nano, tokens))

    async def _settle(self, ticket: Ticket, cost_nano: int, tokens: int) -> None:
        if ticket.intent is not None:
            applied = await self._finish(ticket, ticket.intent, cost_nano, tokens)
        else:
            applied = await self._apply(ticket.store, settle_plan(ticket.counters(), cost_nano, tokens))
        if applied:
            for hook in self.on_settled:
                await hook(ticket)
        if any(h.applied.rule.kind == "concurrency" for h in ticket.held):
            self.queue.notify()

    def correct(self, counters: tuple[HeldCounter, ...], *, cost_nano: int, tokens: int) -> None:
        """Correct counters charged as spent at their reserved amounts (a native batch's worst case)
        to what was actually used; in the background, replayed once the store answers if it is down."""
        self.spawn(self._correct(counters, cost_nano, tokens))

    async def _correct(self, counters: tuple[HeldCounter, ...], cost_nano: int, tokens: int) -> None:
        await self._apply(self.counters, correction_plan(counters, cost_nano, tokens))

    async def _finish(self, ticket: Ticket, reservation: Reservation, cost_nano: int, tokens: int) -> bool:
        """Settle through the intent: exactly once, and a reservation a sweeper already charged at
        its reserved amount is corrected to the actual one."""
        counters = reservation.counters
        plans = late_plans(counters, cost_nano, tokens)
        store = ticket.store
        assert isinstance(store, IntentCounters)
        keep = self.clock()  # a settled intent is deleted: nothing can follow it

        async def finish() -> bool:
            try:
                found = await store.finish(reservation.request_id, self.owner, plans, "settled", keep)
            except StorageError as exc:
                return self._failed(finish, exc, store)
            if found in ("swept", "released"):  # its row stays unreconciled: what `margin reconcile` needs
                log.warning("reservation %s was swept before its settle (replica stalled, or the request outlived "
                            "its lease): counters corrected to the actual $%s", reservation.request_id,
                            Decimal(cost_nano) / NANO)  # fmt: skip
            return True

        return await finish()

    async def _apply(self, store: Counters, adjustments: list[Adjust]) -> bool:
        async def apply() -> bool:
            try:
                await store.adjust(adjustments)
            except StorageError as exc:
                return self._failed(apply, exc, store)
            return True

        return await apply()

    def _failed(self, retry: Callable[[], Coroutine[Any, Any, bool]], exc: StorageError, store: Counters) -> bool:
        """Keep a settle the store did not take, to replay once it answers."""
        if len(self.pending) < _MAX_PENDING:
            self.pending.append(retry)
        if store is self.counters:
            self._down(exc)
        return False

    # --- attempts and intents -------------------------------------------------------------------------

    async def mark_attempt(self, ticket: Ticket, index: int, mark: str) -> None:
        """Record in the shared store that attempt `index` goes upstream now, so that a surviving
        replica writes its ledger row if this one dies. Best effort: a store that does not answer
        costs the row (the local journal still has it), never the request."""
        if ticket.intent is None or not isinstance(ticket.store, SharedIntents):
            return
        try:
            await ticket.store.mark_attempt(ticket.intent.request_id, index, mark)
        except StorageError as exc:
            log.warning("attempt %d of %s not marked in the limits store: %s", index, ticket.intent.request_id, exc)

    # --- background work ------------------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("limits background task failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for every settle in flight (shutdown, tests)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
