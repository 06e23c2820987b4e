"""The request's last ledger row keeps what its headers said: a learned decision with its score and
threshold, an overflow, a semantic cache hit with its similarity (issue 20, 2)."""

from __future__ import annotations

from margin.pipeline.context import RequestContext
from margin.pipeline.ledger_rows import rows_for
from margin.pipeline.record import RequestRecord
from margin.pipeline.refusal_rows import refusal_row
from margin.pipeline.route_labels import decision_extra, route_headers
from margin.routing.policies.outcome import RouteOutcome
from margin.types import Attempt, RouteDecision, TierStep

TIERS = (TierStep("local", ("local-smollm2",)), TierStep("api", ("gpt",)))


def learned_context() -> RequestContext:
    ctx = RequestContext(request_id="req_1", endpoint="chat")
    ctx.decision = RouteDecision(
        model_group="auto", deployments=("local-smollm2", "gpt"), policy="learned", tier="local",
        reason="score=0.6100;threshold=0.5800", tiers=TIERS,
    )  # fmt: skip
    ctx.route_outcome = RouteOutcome(answered_tier="api", overflow_from="local")
    ctx.deployment = "gpt"
    ctx.extra_headers |= {"x-margin-cache": "semantic", "x-margin-cache-similarity": "0.9731"}
    return ctx


def test_a_learned_overflowed_semantic_hit_is_kept_as_its_headers_said() -> None:
    ctx = learned_context()
    headers = route_headers(ctx)
    assert headers["x-margin-route"] == "learned;tier=api;deployment=gpt;chosen=local;score=0.6100;threshold=0.5800"
    assert decision_extra(ctx) == {
        "route": headers["x-margin-route"],
        "route_reason": "score=0.6100;threshold=0.5800",
        "route_overflow": "local->api",
        "cache": "semantic",
        "cache_similarity": "0.9731",
    }


def test_only_the_last_row_carries_the_decision() -> None:
    ctx = learned_context()
    ctx.attempts = [Attempt("req_1", 0, "local-smollm2", "smollm2"), Attempt("req_1", 1, "gpt", "gpt-4o")]
    ctx.attempts[0].status = "error"
    first, last = rows_for(ctx, overhead_ms=1.5)
    assert "route" not in first.extra and "overhead_ms" not in first.extra
    assert last.extra["route_reason"] == "score=0.6100;threshold=0.5800" and last.extra["overhead_ms"] == "1.500"
    assert last.extra["route_tier"] == "api" and last.extra["route_chosen"] == "local"


def test_a_refused_request_keeps_the_route_it_was_refused_on() -> None:
    ctx = learned_context()
    ctx.extra_headers.clear()
    ctx.route_outcome = RouteOutcome()
    ctx.deployment = None
    row = refusal_row(RequestRecord(ctx, "BudgetRefusal", None, 0.001, None, 0.001), "budget_exceeded")
    assert row.status == "refused" and row.error_class == "budget_exceeded"
    assert row.extra == {
        "route": "learned;tier=-;deployment=-;chosen=local;score=0.6100;threshold=0.5800",  # nothing answered
        "route_reason": "score=0.6100;threshold=0.5800",
    }
