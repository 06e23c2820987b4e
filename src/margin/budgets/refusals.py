"""The errors a refused request gets. Every one says which scope refused it, the limit, what was
used and when the window frees up; none is retried by the OpenAI or Anthropic SDKs unless waiting
helps (rate and concurrency limits: 429 with Retry-After)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from margin import errors
from margin.budgets.rules import NANO, Applied


@dataclass(frozen=True, slots=True)
class Shortfall:
    """What did not fit: the budget, what its window already holds (spent plus the worst cases of
    requests in flight) and, once the request path adds them, what this request reserved and the
    largest max_tokens that would have fitted."""

    applied: Applied
    used: int  # nano-USD or tokens, as the rule counts
    reset_at: float
    requested: int | None = None  # this request's worst case: what it tried to reserve
    fits_max_tokens: int | None = None  # None: unknown, or nothing fits (the prompt alone is too much)

    @property
    def room(self) -> int:
        return max(0, self.applied.rule.limit - self.used)


class BudgetRefusal(errors.BudgetExceeded):
    """A budget refused this request; `shortfall` says by how much (its message says so too)."""

    def __init__(self, shortfall: Shortfall, *, headers: dict[str, str], details: dict[str, Any]) -> None:
        super().__init__(budget_message(shortfall), headers=headers, details=details)
        self.shortfall = shortfall

    def explained(self, requested: int, fits_max_tokens: int | None) -> BudgetRefusal:
        """The same refusal (same class, headers) naming this request's reservation and the
        max_tokens that would fit."""
        shortfall = replace(self.shortfall, requested=requested, fits_max_tokens=fits_max_tokens)
        details = {**self.details, "requested": _amount(shortfall.applied, requested)}
        details["remaining"] = _amount(shortfall.applied, shortfall.room)
        if fits_max_tokens is not None:
            details["max_tokens_that_fit"] = fits_max_tokens
        return type(self)(shortfall, headers=dict(self.headers), details=details)


class BudgetExceededAsRateLimit(BudgetRefusal):
    """`limits.on_budget_exceeded: 429` for clients that only understand 429; still not retried."""

    status = 429


def _amount(applied: Applied, value: int) -> str | int:
    if applied.rule.kind == "usd":
        return format((Decimal(value) / NANO).normalize(), "f")
    return value


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def budget_message(shortfall: Shortfall) -> str:
    """Says what did not fit and what to do: a smaller max_tokens, or wait for the reset."""
    applied = shortfall.applied
    unit = "USD" if applied.rule.kind == "usd" else "tokens"
    limit, used = _amount(applied, applied.rule.limit), _amount(applied, shortfall.used)
    reset = f"it resets at {_iso(shortfall.reset_at)}"
    if shortfall.room == 0:
        return f"Budget exceeded for {applied.scope}: {used} of its {limit} {unit} this window is used; {reset}."
    room = _amount(applied, shortfall.room)
    if shortfall.requested is None:
        return (
            f"Budget exceeded for {applied.scope}: this request's worst case does not fit in the {room} {unit} "
            f"left of its {limit} {unit} this window; {reset}."
        )
    requested = _amount(applied, shortfall.requested)
    head = (
        f"Budget for {applied.scope} cannot hold this request: its worst case (prompt plus max_tokens of output "
        f"at the dearest deployment it may use) reserves {requested} {unit}, and {room} of the {limit} {unit} "
        f"limit is left this window ({used} spent or held by requests in flight). "
    )
    if shortfall.fits_max_tokens is not None:
        return head + f"Ask for max_tokens <= {shortfall.fits_max_tokens} to fit, or wait: {reset}."
    return head + f"No max_tokens fits (the prompt alone needs more): shorten it, or wait: {reset}."


def budget_exceeded(applied: Applied, used: int, reset_at: float, status: int) -> BudgetRefusal:
    rule = applied.rule
    details: dict[str, Any] = {
        "scope": applied.scope,
        "limit": _amount(applied, rule.limit),
        "unit": "USD" if rule.kind == "usd" else "tokens",
        "used": _amount(applied, used),
        "window": rule.window.tag if rule.window is not None else None,
        "reset_at": _iso(reset_at),
    }
    # x-should-retry: false is honoured by the OpenAI and Anthropic SDKs (waiting will not help).
    headers = {"x-should-retry": "false"}
    cls = BudgetExceededAsRateLimit if status == 429 else BudgetRefusal
    return cls(Shortfall(applied, used, reset_at), headers=headers, details=details)


def rate_limited(applied: Applied, used: int, reset_at: float, now: float) -> errors.RateLimited:
    rule = applied.rule
    retry = max(1, math.ceil(reset_at - now))
    what = {"rpm": "requests per minute", "tpm": "tokens per minute", "concurrency": "requests in flight"}[rule.kind]
    details: dict[str, Any] = {"scope": applied.scope, "limit": rule.limit, "used": used, "limit_type": rule.kind}
    code = "concurrency_limit_exceeded" if rule.kind == "concurrency" else "rate_limit_exceeded"
    return errors.RateLimited(
        f"Rate limit reached for {applied.scope}: {rule.limit} {what}. Retry after {retry} s.",
        code=code,
        headers={"retry-after": str(retry)},
        details=details,
    )


def limits_unavailable() -> errors.ServiceUnavailable:
    return errors.ServiceUnavailable(
        "Budgets and rate limits cannot be checked right now (their store is unreachable); "
        "this gateway is configured to refuse requests until it can.",
        code="limits_unavailable",
        headers={"retry-after": "1"},
    )
