"""Work beside the request path: threshold alerts after settles, the ledger's figure for a budget
counter the store lost (Redis restarted empty), and pruning expired counter rows."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

from margin.budgets.admission import Held, Limiter, Ticket
from margin.budgets.alerts import Alert, AlertSink, iso
from margin.budgets.rules import NANO, Applied
from margin.budgets.windows import Span
from margin.periodic import Periodic
from margin.storage.protocols import Charge, Counters, GroupBy, KeyStore, LedgerStore, StorageError

log = logging.getLogger("margin.budgets")
_PRUNE_EVERY_S = 600.0
_LEDGER_GROUP: dict[str, GroupBy] = {"key": "key", "team": "team", "tag": "tag", "deployment": "deployment"}
_BY_KEYS = frozenset({"org", "user"})
_MAX_MEMO = 50_000
_CHECK_EVERY_S = 1.0


def _amount(kind: str, value: int) -> str:
    return format((Decimal(value) / NANO).normalize(), "f") if kind == "usd" else str(value)


class Upkeep:
    def __init__(
        self, limiter: Limiter, alerts: AlertSink, ledger: LedgerStore | None, keys: KeyStore | None = None
    ) -> None:
        self.limiter = limiter
        self.alerts = alerts
        self.ledger = ledger
        self.keys = keys  # org and user spend is rebuilt from the rollups of their keys
        self._memo: set[tuple[str, int, str]] = set()  # alerts this replica knows were claimed
        self._checked: dict[str, float] = {}  # counter -> when its spend was last read (loop time)
        self._rechecks: set[str] = set()  # counters with a delayed check pending
        self._later: set[asyncio.Task[None]] = set()
        self._pruning = Periodic("margin-limits-prune", self._prune, _PRUNE_EVERY_S)
        limiter.on_settled.append(self.check_thresholds)
        limiter.on_refused.append(self.blocked)
        if ledger is not None:
            limiter.ledger_amount = self.ledger_amount

    async def start(self) -> None:
        await self.alerts.start()
        self._pruning.start()

    async def stop(self) -> None:
        await self.limiter.drain()
        for task in list(self._later):
            task.cancel()
        await self._pruning.stop()
        await self.alerts.stop()

    # --- alerts -----------------------------------------------------------------------------------

    async def check_thresholds(self, ticket: Ticket) -> None:
        """Read each budget's spend at most once per second per counter (alerts may lag by that much):
        a read per settle would cost more than the reservation itself."""
        now = asyncio.get_running_loop().time()
        for held in ticket.held:
            rule = held.applied.rule
            if not rule.is_budget or not rule.thresholds:
                continue
            if all((held.applied.name, held.span.last, str(t)) in self._memo for t in rule.thresholds):
                continue
            if self._checked.get(held.applied.name, float("-inf")) > now - _CHECK_EVERY_S:
                self._recheck(ticket)
                continue
            self._checked[held.applied.name] = now
            try:
                spent = await ticket.store.read(held.applied.name, held.span.first, held.span.last)
            except StorageError:
                return
            for threshold in rule.thresholds:
                if spent >= threshold * rule.limit:
                    await self._claim(ticket.store, held, str(threshold), spent)

    def _recheck(self, ticket: Ticket) -> None:
        """A settle inside the quiet second still gets looked at once, when the second is over."""
        names = {h.applied.name for h in ticket.held} - self._rechecks
        if not names:
            return
        self._rechecks |= names

        async def later() -> None:
            await asyncio.sleep(_CHECK_EVERY_S)
            self._rechecks -= names
            for name in names:
                self._checked.pop(name, None)
            await self.check_thresholds(ticket)

        task = asyncio.get_running_loop().create_task(later())
        self._later.add(task)  # not the limiter's tasks: draining settles must not wait a second
        task.add_done_callback(self._later.discard)

    def blocked(self, held: Held, used: int) -> None:
        if (held.applied.name, held.span.last, "blocked") not in self._memo:
            self.limiter.spawn(self._claim(self.limiter.counters, held, "blocked", used))

    async def _claim(self, store: Counters, held: Held, label: str, used: int) -> None:
        memo = (held.applied.name, held.span.last, label)
        if memo in self._memo:
            return
        name = f"alert:{held.applied.name}:{label}"
        claim = Charge(name, held.span.last, held.span.last, None, 1, 1, held.span.expires_at)
        try:
            first = (await store.reserve([claim])).admitted
        except StorageError:
            return  # retried on the next settle
        if len(self._memo) >= _MAX_MEMO:
            self._memo.clear()
        self._memo.add(memo)
        if first:
            self.alerts.emit(self._alert(held, label, used))

    def _alert(self, held: Held, label: str, used: int) -> Alert:
        rule = held.applied.rule
        return Alert(
            scope=held.applied.scope,
            kind=rule.kind,
            window=rule.window.tag if rule.window is not None else "",
            window_bucket=held.span.last,
            threshold=label,
            used=_amount(rule.kind, used),
            limit=_amount(rule.kind, rule.limit),
            reset_at=iso(held.span.reset_at),
            at=iso(self.limiter.clock()),
        )

    # --- the ledger's figures, for counters a store lost ------------------------------------------

    async def ledger_amount(self, applied: Applied, span: Span) -> int:
        """What the ledger recorded for a budget scope in the window so far (raises StorageError when
        the ledger cannot say). Org and user spend is the spend of their keys (key rollups)."""
        if self.ledger is None:
            return 0
        kind, _, name = applied.scope.partition(":")
        group = _LEDGER_GROUP.get(kind, "model" if kind == "global" else "key" if kind in _BY_KEYS else None)
        if group is None:
            return 0
        rows = await self.ledger.spend_report(span.start, self.limiter.clock() + 60, group)
        if kind in _BY_KEYS:
            members = await self._keys_of(kind, name)
            rows = [r for r in rows if r.group in members]
        elif kind != "global":
            rows = [r for r in rows if r.group == name]
        if applied.rule.kind == "usd":
            return sum((int((r.cost_total * NANO).to_integral_value()) for r in rows), 0)
        return sum(sum(r.tokens.values()) for r in rows)

    async def _keys_of(self, kind: str, name: str) -> set[str]:
        """Key ids of an org or user (the anonymous principal counts under `default`)."""
        members = {"anonymous"} if name == "default" else set()
        if self.keys is not None:
            members.update(k.key_id for k in await self.keys.list_keys() if getattr(k, kind) == name)
        return members

    # --- pruning ----------------------------------------------------------------------------------

    async def _prune(self) -> None:
        now = self.limiter.clock()
        for store in (self.limiter.counters, self.limiter.fallback):
            try:
                await store.prune(now)
            except StorageError as exc:  # the other store is still pruned
                log.warning("pruning limit counters failed: %s", exc)
