"""The teams, budgets and rate limits a replica enforces, kept live without a restart.

Every `every_s` seconds (`limits.key_cache_s`, the bound keys created on another replica already
have) the replica reads the stored objects; when they changed, it builds a new rule book (config
objects plus stored ones) and swaps it into the limiter in one assignment, and swaps the team
directory the authenticator places principals with. A change made on this replica applies here at
once (`refresh` after the write). Counters are named by scope, kind and window, never by object:
a budget whose limit changes keeps its counter, so what is spent and what requests in flight hold
stays counted, and their settles land on the same counter.

A stored object this version cannot read is never taken for "no limit": the previous rules stay in
force and the error is logged at each refresh until it is fixed."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from zoneinfo import ZoneInfo

from margin.budgets.admission import Limiter
from margin.budgets.objects import Declared, spec_of, stored_declared
from margin.budgets.rules import Applied, RuleBook
from margin.config.limits import BudgetConfig, RateLimitConfig, TeamConfig
from margin.periodic import Periodic
from margin.storage.protocols import StorageError
from margin.storage.teams import ObjectStore
from margin.types import Principal

log = logging.getLogger("margin.limits")


@dataclass(frozen=True, slots=True)
class TeamDirectory:
    """Which team a key or a user belongs to, by the team objects (a key's own id first)."""

    by_key: dict[str, str] = field(default_factory=dict)
    by_user: dict[str, str] = field(default_factory=dict)

    def place(self, principal: Principal) -> Principal:
        team = self.by_key.get(principal.key_id) or self.by_user.get(principal.user)
        return principal if team is None or team == principal.team else replace(principal, team=team)

    def team_of_member(self, kind: str, member: str) -> str | None:
        return (self.by_key if kind == "keys" else self.by_user).get(member)


def directory_of(teams: list[TeamConfig]) -> TeamDirectory:
    """The first team listing a member keeps it (config teams first, then stored ones by creation)."""
    by_key: dict[str, str] = {}
    by_user: dict[str, str] = {}
    for team in teams:
        for key_id in team.keys:
            by_key.setdefault(key_id, team.name)
        for user in team.users:
            by_user.setdefault(user, team.name)
    return TeamDirectory(by_key, by_user)


class LiveObjects:
    def __init__(
        self,
        store: ObjectStore,
        limiter: Limiter,
        zone: ZoneInfo,
        config: list[Declared],
        *,
        every_s: float = 5.0,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.zone = zone
        self.config = config  # what the config file declares (replaced on reload)
        self.every_s = every_s
        self.stored: list[Declared] = []
        self.directory = TeamDirectory()
        self.refreshed_at: float | None = None  # loop time of the last successful read
        self._loop = Periodic(
            "margin-limits-objects", self.refresh, every_s, handled=(StorageError,), on_error=_refresh_failed
        )
        self._lock = asyncio.Lock()

    def everything(self) -> list[Declared]:
        return [*self.config, *self.stored]

    def place(self, principal: Principal) -> Principal:
        """The principal with the team its team objects give it (the request path: a dict lookup)."""
        return self.directory.place(principal)

    async def start(self) -> None:
        await self.store.migrate()
        try:
            await self.refresh()
        except StorageError as exc:  # the config's rules apply meanwhile; retried every `every_s`
            log.warning("reading teams, budgets and rate limits failed: %s", exc)
            self.apply()
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()
        await self.store.close()

    async def refresh(self) -> None:
        async with self._lock:
            stored = [stored_declared(o) for o in await self.store.objects() if o.kind != "drain"]
            self.refreshed_at = asyncio.get_running_loop().time()
            if stored == self.stored:
                return
            try:
                rules, directory = self.build(stored=stored)
            except ValueError as exc:
                log.error("teams, budgets and rate limits not applied (the previous ones stay): %s", exc)
                return
            await self._catch_up(rules)
            self._swap(rules, directory)
            self.stored = stored

    async def replace_config(self, config: list[Declared]) -> None:
        """A reload: the config file's objects change, the stored ones stay (ValueError: nothing changes)."""
        async with self._lock:
            rules, directory = self.build(config=config)
            await self._catch_up(rules)
            self._swap(rules, directory)
            self.config = config

    def apply(self) -> None:
        """Swap in the rules of the objects already read (start-up with the store down: the config's)."""
        self._swap(*self.build())

    def build(
        self, stored: list[Declared] | None = None, config: list[Declared] | None = None
    ) -> tuple[RuleBook, TeamDirectory]:
        """The rules and the directory of these objects (ValueError when one cannot be read)."""
        objects = [*(self.config if config is None else config), *(self.stored if stored is None else stored)]
        teams: list[TeamConfig] = []
        budgets: list[BudgetConfig] = []
        rates: list[RateLimitConfig] = []
        for obj in sorted(objects, key=lambda o: (o.source != "config", o.created_at or 0.0, o.object_id)):
            spec = spec_of(obj.kind, obj.body)
            if isinstance(spec, TeamConfig):
                teams.append(spec)
            elif isinstance(spec, BudgetConfig):
                budgets.append(spec)
            elif isinstance(spec, RateLimitConfig):
                rates.append(spec)
        return RuleBook.from_config(budgets, rates, self.zone), directory_of(teams)

    def _swap(self, rules: RuleBook, directory: TeamDirectory) -> None:
        self.limiter.replace_rules(rules)
        self.directory = directory

    async def _catch_up(self, rules: RuleBook) -> None:
        """Before a new budget on a named scope applies, its counter is raised to what the ledger
        recorded for the scope this window (`*` scopes count from their first request)."""
        known = {rule.counter(rule.scope) for rule in self.limiter.rules.rules}
        for rule in rules.rules:
            if not rule.is_budget or rule.scope.endswith(":*") or rule.counter(rule.scope) in known:
                continue
            try:
                await self.limiter.catch_up(Applied(rule, rule.scope))
            except StorageError as exc:  # it applies all the same, counting from now
                log.warning("budget %s: its window's spend so far was not read: %s", rule.scope, exc)


def _refresh_failed(exc: Exception) -> None:  # a StorageError: the last rules stay in force
    log.warning("refreshing teams, budgets and rate limits failed: %s", exc)
