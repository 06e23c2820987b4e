"""One request's failover state, shared by the caller and by a stream that continues after its first chunk.

It lives apart from `margin.pipeline.call` so that `margin.pipeline.call_stream` can hold it without
importing the caller: the caller opens streams, a stream never reaches back for the caller's module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from margin.resilience.chain import Chain
from margin.resilience.deadline import Deadline, RetryBudget
from margin.resilience.error_actions import ErrorPolicy


@dataclass(slots=True)
class Run:
    """One request's failover state, shared by all its attempts (stream continuations included)."""

    deadline: Deadline
    budget: RetryBudget
    chain: Chain
    policy: ErrorPolicy
    group: str
    route: tuple[str, ...]
    skipped: list[str] = field(default_factory=list)  # "deployment: why", for the exhausted error
    first_failure: str | None = None  # error class of the first failed attempt (or why it was skipped)
