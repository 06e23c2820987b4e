"""How long to wait before trying the same deployment again.

Exponential backoff with full jitter (AWS's "exponential backoff and jitter" analysis: it spreads
synchronized clients best). An upstream's Retry-After is honoured as a floor, but only up to a cap:
a provider asking for a minute gets failed over, not waited on. `in_place_wait` is the whole rule:
whether an error is retried on the same deployment at all, and after how long.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from margin import errors
from margin.config.model import ErrorAction, RetryPolicy


def backoff(retry_index: int, policy: RetryPolicy, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry number `retry_index` (0-based): uniform in [0, min(max, base * 2^i)]."""
    ceiling = min(policy.max_delay, policy.base_delay * float(1 << min(retry_index, 30)))
    return rand() * ceiling


def retry_delay(
    retry_index: int,
    retry_after: float | None,
    policy: RetryPolicy,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before retrying in place, or None when the wait asked for is over the cap."""
    delay = backoff(retry_index, policy, rand)
    if retry_after is None:
        return delay
    if retry_after > policy.retry_after_cap:
        return None
    return max(retry_after, delay)


def in_place_wait(
    error: errors.MarginError,
    action: ErrorAction,
    policy: RetryPolicy,
    *,
    retries: int,
    alternatives: bool,
    probe: bool,
    remaining: float,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait before calling the same deployment again, or None: fail over instead.

    Retried in place: an error whose action is `retry`, or a retryable one when no other deployment
    is left on the route. Not when the failed call was a circuit's probe (its failure re-opened the
    circuit), after the deployment's `max_retries`, when Retry-After is over `retry_after_cap`, nor
    when the wait would outlast the request's deadline (`remaining` seconds)."""
    in_place = action == "retry" or (error.retryable and not alternatives)
    if not in_place or probe or retries >= policy.max_retries:
        return None
    after = error.retry_after if isinstance(error, errors.UpstreamError) else None
    delay = retry_delay(retries, after, policy, rand)
    if delay is None or delay >= remaining:
        return None
    return delay
