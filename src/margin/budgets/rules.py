"""Limit rules and which of them apply to a request.

A rule is one limit of one kind on a scope pattern: `team:*` gives every team its own counter,
`team:search` only that team. A request's scopes are its principal's path (org, team, user, key),
each of its tags, the deployment its route starts with, and `global`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from margin.budgets.windows import CalendarWindow, RollingWindow, Window
from margin.config.limits import BudgetConfig, RateLimitConfig, StoreFailure
from margin.identity.key_spec import KeyBudget, KeyPolicy
from margin.types import Principal

Kind = Literal["usd", "tokens", "rpm", "tpm", "concurrency"]
NANO = Decimal(10**9)  # money counters count nano-dollars: exact integers, fine enough for cheap models


@dataclass(frozen=True, slots=True)
class Rule:
    kind: Kind
    scope: str  # the pattern as configured, e.g. "team:*"
    limit: int  # in counter units: nano-USD, tokens, requests
    window: Window | None  # None: concurrency (held only while in flight)
    thresholds: tuple[float, ...] = ()
    on_store_failure: StoreFailure | None = None

    @property
    def is_budget(self) -> bool:
        return self.kind in ("usd", "tokens")

    def counter(self, scope: str) -> str:
        return f"{self.kind}:{scope}" if self.window is None else f"{self.kind}:{scope}:{self.window.tag}"


@dataclass(frozen=True, slots=True)
class Applied:
    """A rule bound to one concrete scope of one request."""

    rule: Rule
    scope: str  # e.g. "team:search"
    name: str = field(init=False)  # the counter's name, built once

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.rule.counter(self.scope))


def usd_limit(value: Decimal) -> int:
    return int((value * NANO).to_integral_value(rounding=ROUND_FLOOR))


def _window(window: str, hours: int | None, zone: ZoneInfo) -> Window:
    if window == "rolling":
        assert hours is not None
        return RollingWindow.hours(hours)
    if window == "day":
        return CalendarWindow("day", zone)
    return CalendarWindow("week" if window == "week" else "month", zone)


def budget_rule(scope: str, budget: BudgetConfig | KeyBudget, zone: ZoneInfo, policy: StoreFailure | None) -> Rule:
    window = _window(budget.window, budget.hours, zone)
    thresholds = tuple(sorted(set(budget.thresholds)))
    if budget.limit_usd is not None:
        return Rule("usd", scope, usd_limit(budget.limit_usd), window, thresholds, policy)
    assert budget.limit_tokens is not None
    return Rule("tokens", scope, budget.limit_tokens, window, thresholds, policy)


def rate_rules(
    scope: str,
    limits: RateLimitConfig | KeyPolicy,
    policy: StoreFailure | None,
) -> Iterator[Rule]:
    minute = RollingWindow.minute()
    if limits.requests_per_minute is not None:
        yield Rule("rpm", scope, limits.requests_per_minute, minute, (), policy)
    if limits.tokens_per_minute is not None:
        yield Rule("tpm", scope, limits.tokens_per_minute, minute, (), policy)
    if limits.concurrency is not None:
        yield Rule("concurrency", scope, limits.concurrency, None, (), policy)


def key_rules(key_id: str, policy: KeyPolicy | None, zone: ZoneInfo) -> tuple[Rule, ...]:
    if policy is None:
        return ()
    scope = f"key:{key_id}"
    rules = list(rate_rules(scope, policy, None))
    if policy.budget is not None:
        rules.append(budget_rule(scope, policy.budget, zone, None))
    return tuple(rules)


@dataclass(slots=True)
class RuleBook:
    """Configured rules indexed by scope kind and name, so matching a request is a few dict lookups."""

    rules: list[Rule] = field(default_factory=list)
    _index: dict[str, dict[str, list[Rule]]] = field(default_factory=lambda: defaultdict(dict))

    def __post_init__(self) -> None:
        for rule in self.rules:
            kind, _, name = rule.scope.partition(":")
            self._index[kind].setdefault(name, []).append(rule)

    @classmethod
    def from_config(cls, budgets: Iterable[BudgetConfig], rates: Iterable[RateLimitConfig], zone: ZoneInfo) -> RuleBook:
        rules = [budget_rule(b.scope, b, zone, b.on_store_failure) for b in budgets]
        for rate in rates:
            rules.extend(rate_rules(rate.scope, rate, rate.on_store_failure))
        return cls(rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, principal: Principal, deployment: str | None) -> list[Applied]:
        found: list[Applied] = []
        for kind, names in request_scopes(principal, deployment):
            by_name = self._index.get(kind)
            if not by_name:
                continue
            for name in names:
                for pattern in (name, "*"):
                    for rule in by_name.get(pattern, ()):
                        found.append(Applied(rule, f"{kind}:{name}" if kind != "global" else "global"))
        return found


def request_scopes(principal: Principal, deployment: str | None) -> list[tuple[str, tuple[str, ...]]]:
    scopes: list[tuple[str, tuple[str, ...]]] = [
        ("global", ("",)),
        ("org", (principal.org,)),
        ("team", (principal.team,)),
        ("user", (principal.user,)),
        ("key", (principal.key_id,)),
        ("tag", principal.tags),
    ]
    if deployment is not None:
        scopes.append(("deployment", (deployment,)))
    return scopes
