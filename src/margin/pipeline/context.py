"""Per-request state carried through the stages."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from margin.pipeline.trace import RequestTrace
from margin.rollout.split import Assignment
from margin.routing.policies.outcome import RouteOutcome
from margin.storage.ledger_row import LedgerRow, RequestColumns, request_columns
from margin.types import Attempt, ChatRequest, Cost, EmbeddingRequest, Principal, RouteDecision, Usage

Endpoint = Literal["chat", "completions", "embeddings", "messages"]


@dataclass(frozen=True, slots=True)
class PromptCounts:
    """A request's prompt tokens as each deployment of its route counts them, counted once before
    the request is admitted, off the event loop where the tokenizer is slow
    (`margin.pipeline.meter.Meter.count_ahead`). Only for that request object: a continuation built
    from it (a prefill) is another prompt."""

    request: ChatRequest | EmbeddingRequest
    tokens: dict[str, int]


@dataclass(slots=True)
class RequestContext:
    request_id: str
    endpoint: Endpoint
    api_key: str | None = None
    # When the request arrived (the HTTP layer sets both from the request's first byte).
    started: float = field(default_factory=time.perf_counter)
    wall_started: float = field(default_factory=time.time)
    principal: Principal = field(default_factory=Principal)
    authenticated: bool = False  # stage ① ran (the HTTP layer runs it before reading the body)
    decision: RouteDecision | None = None
    attempts: list[Attempt] = field(default_factory=list)
    # Upstream time of calls made for this request outside its own attempts (a cascade's verifier);
    # the attempts' own upstream time is on each attempt's clock.
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
    purpose: str | None = None  # x-margin-purpose (e.g. eval): tags the request, lowers its class
    route_outcome: RouteOutcome = field(default_factory=RouteOutcome)  # what tiered routing did
    counterfactual: Cost | None = None  # a routed request's cost had the premium tier answered it
    reservation: object | None = None  # stage ②'s ticket (margin.budgets.admission.Ticket), settled once
    rollout: Assignment | None = None  # stage ④: the rollout arm that answers (margin.rollout.split)
    prompt_counts: PromptCounts | None = None
    trace: RequestTrace | None = None  # set when this request is traced (margin.pipeline.trace)

    # Set by the HTTP layer: when the response's last byte went to the server (perf_counter), and,
    # until then, what waits for it (the request's records, so they carry the complete overhead).
    written_at: float | None = None
    on_written: list[Callable[[], None]] | None = None

    def ledger_columns(self) -> RequestColumns:
        """The columns each of this request's ledger rows shares (who asked, the route taken)."""
        decision = self.decision
        model_group, policy = (decision.model_group, decision.policy) if decision is not None else ("", "")
        return request_columns(
            self.request_id, self.endpoint, self.principal, model_group=model_group, route_policy=policy
        )

    def counted_prompt(self, request: ChatRequest | EmbeddingRequest, deployment: str | None) -> int | None:
        """`request`'s prompt tokens on `deployment` as counted ahead, or None (not counted)."""
        counts = self.prompt_counts
        if counts is None or counts.request is not request or deployment is None:
            return None
        return counts.tokens.get(deployment)

    def upstream_time(self) -> float:
        """Seconds the upstreams spent on this request so far, as the adapters measured them: per
        attempt, from the request write to the last byte read (the open attempt's included)."""
        return self.upstream_seconds + sum(attempt.upstream_seconds() for attempt in self.attempts)

    def overhead_ms(self, at: float | None = None) -> float:
        """The gateway's own time from the request's arrival to `at` (default: now): the elapsed
        time minus the upstreams' time. Event-loop queueing before an upstream write or after its
        last byte arrived, parsing and serialising all count as the gateway's."""
        now = time.perf_counter() if at is None else at
        return max(0.0, (now - self.started - self.upstream_time()) * 1000)

    def hold_until_written(self) -> None:
        """The HTTP layer will call `written` once the response's last byte is out."""
        if self.written_at is None:
            self.on_written = []

    def after_written(self, callback: Callable[[], None]) -> bool:
        """Run `callback` once the response is written; False (and nothing held) when no response
        is being written: outside the HTTP layer, or already written."""
        if self.on_written is None:
            return False
        self.on_written.append(callback)
        return True

    def written(self, at: float) -> None:
        """The response's last byte went out at `at` (or the client left): release what waited."""
        if self.written_at is not None:
            return
        self.written_at = at
        waiting, self.on_written = self.on_written or [], None
        for callback in waiting:
            callback()
