"""Per-request state carried through the stages."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from margin.routing.policies.outcome import RouteOutcome
from margin.storage.ledger_row import LedgerRow
from margin.types import Attempt, Cost, Principal, RouteDecision, Usage

Endpoint = Literal["chat", "completions", "embeddings", "messages"]


@dataclass(slots=True)
class RequestContext:
    request_id: str
    endpoint: Endpoint
    api_key: str | None = None
    started: float = field(default_factory=time.perf_counter)
    wall_started: float = field(default_factory=time.time)
    principal: Principal = field(default_factory=Principal)
    decision: RouteDecision | None = None
    attempts: list[Attempt] = field(default_factory=list)
    upstream_seconds: float = 0.0
    deployment: str | None = None
    model: str | None = None
    cost_rank: int | None = None  # the answering deployment's
    extra_headers: dict[str, str] = field(default_factory=dict)
    cost: Cost | None = None
    usage: Usage | None = None  # of the answering attempt
    cache_control: str | None = None  # the client's x-margin-cache / cache-control header
    cache_row: LedgerRow | None = None  # set when a cache hit answered: the request's one ledger row
    route_hints: dict[str, str] = field(default_factory=dict)  # tier pin/cap from request headers
    route_outcome: RouteOutcome = field(default_factory=RouteOutcome)  # what tiered routing did
    counterfactual: Cost | None = None  # a routed request's cost had the premium tier answered it
    reservation: object | None = None  # stage ②'s ticket (margin.budgets.admission.Ticket), settled once

    def overhead_ms(self) -> float:
        """Time spent in margin itself: wall time so far minus time waiting on upstreams."""
        return max(0.0, (time.perf_counter() - self.started - self.upstream_seconds) * 1000)
