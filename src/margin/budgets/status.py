"""`GET /admin/budgets/status`: spend, reserved, limit and reset time per budget scope, read live from the
counters. Wildcard budgets (`team:*`) are listed for every member known from the key store."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from margin.budgets.admission import Limiter
from margin.budgets.alerts import iso
from margin.budgets.rules import NANO, Applied, Rule
from margin.storage.protocols import HOLD_SUFFIX, StorageError
from margin.types import Principal


def _amount(kind: str, value: int) -> str | int:
    return format((Decimal(value) / NANO).normalize(), "f") if kind == "usd" else value


def budget_scopes(
    limiter: Limiter, principals: Iterable[Principal], key_rules: Mapping[str, Iterable[Rule]]
) -> list[Applied]:
    seen: dict[str, Applied] = {}
    people = list(principals)
    for rule in limiter.rules.rules:
        if not rule.is_budget:
            continue
        if not rule.scope.endswith(":*"):
            seen.setdefault(rule.counter(rule.scope), Applied(rule, rule.scope))
            continue
        for principal in people:
            for applied in limiter.rules.match(principal, None):
                if applied.rule is rule:
                    seen.setdefault(applied.name, applied)
    for rules in key_rules.values():
        for rule in rules:
            if rule.is_budget:
                seen.setdefault(rule.counter(rule.scope), Applied(rule, rule.scope))
    return sorted(seen.values(), key=lambda a: a.name)


async def describe(limiter: Limiter, applied: Applied) -> dict[str, Any]:
    rule = applied.rule
    assert rule.window is not None
    now = limiter.clock()
    span = rule.window.span(now)
    slot = limiter.lease.slot(now)
    entry: dict[str, Any] = {
        "scope": applied.scope,
        "kind": rule.kind,
        "unit": "USD" if rule.kind == "usd" else "tokens",
        "window": rule.window.tag,
        "limit": _amount(rule.kind, rule.limit),
        "thresholds": list(rule.thresholds),
        "reset_at": iso(span.reset_at),
    }
    try:
        spent = await limiter.counters.read(applied.name, span.first, span.last)
        held = await limiter.counters.read(applied.name + HOLD_SUFFIX, slot - 1, slot)
    except StorageError as exc:
        entry["error"] = f"counters unreachable: {type(exc).__name__}"
        return entry
    entry["spent"] = _amount(rule.kind, spent)
    entry["reserved"] = _amount(rule.kind, held)
    entry["remaining"] = _amount(rule.kind, max(0, rule.limit - spent - held))
    entry["used_fraction"] = round(spent / rule.limit, 6) if rule.limit else None
    return entry
