"""How a routed request is labelled: response headers, Prometheus metrics, ledger columns.

`x-margin-route` says which policy decided, the tier and deployment that answered, and why, e.g.
`learned+cascade;tier=local;deployment=local-smollm2;score=0.1234;threshold=0.4100`. Cascades add
`x-margin-cascade: accepted|escalated` and `x-margin-cascade-check`; overflow adds
`x-margin-overflow: FROM->TO`.
"""

from __future__ import annotations

from decimal import Decimal

from margin.metrics import Metrics
from margin.pipeline.context import RequestContext
from margin.types import Attempt


def route_headers(ctx: RequestContext) -> dict[str, str]:
    decision = ctx.decision
    if decision is None:
        return {}
    outcome = ctx.route_outcome
    if decision.tier is None:
        rank = "" if ctx.cost_rank is None else f";cost_rank={ctx.cost_rank}"
        return {"x-margin-route": f"{decision.policy}{rank};deployment={ctx.deployment or '-'}"}
    answered = outcome.answered_tier or decision.tier_of(ctx.deployment) or "-"
    parts = [decision.policy, f"tier={answered}", f"deployment={ctx.deployment or '-'}"]
    if answered != decision.tier:
        parts.append(f"chosen={decision.tier}")
    if decision.reason:
        parts.append(decision.reason)
    headers = {"x-margin-route": ";".join(parts)}
    if outcome.cascade is not None:
        headers["x-margin-cascade"] = outcome.cascade
        if outcome.check:
            headers["x-margin-cascade-check"] = outcome.check
    if outcome.overflow_from is not None and answered != outcome.overflow_from:
        headers["x-margin-overflow"] = f"{outcome.overflow_from}->{answered}"
    return headers


# The explanation headers a request's last ledger row keeps in `extra`, so `margin requests show`
# and `GET /admin/requests/{id}` explain it after the fact exactly as its response headers did.
EXPLAIN_HEADERS = {
    "x-margin-route": "route",
    "x-margin-cascade": "route_cascade",
    "x-margin-cascade-check": "route_cascade_check",
    "x-margin-overflow": "route_overflow",
    "x-margin-fallback-from": "fallback_from",
    "x-margin-fallback-reason": "fallback_reason",
    "x-margin-degraded": "fallback_degraded",
    "x-margin-cache": "cache",
    "x-margin-cache-similarity": "cache_similarity",
}


def decision_extra(ctx: RequestContext) -> dict[str, str]:
    """The routing decision as the response headers told it (policy, rule or score and threshold,
    cascade, overflow, the fallback taken and why, the cache decision and similarity), plus the
    route stage's reason on its own (`rule=...` or `score=...;threshold=...`)."""
    headers = {**ctx.extra_headers, **route_headers(ctx)}
    explained = {key: headers[name] for name, key in EXPLAIN_HEADERS.items() if name in headers}
    if ctx.decision is not None and ctx.decision.reason:
        explained["route_reason"] = ctx.decision.reason
    return explained


def row_savings(ctx: RequestContext, attempt: Attempt, *, is_final: bool) -> Decimal:
    """This row's share of (all-premium counterfactual - actual spend): the answering row carries
    the counterfactual minus its own cost, every other attempt (a rejected cheap answer, a verifier
    call) minus its cost. Zero for untiered routes, so sums over any grouping stay meaningful."""
    if ctx.counterfactual is None:
        return Decimal(0)
    cost = attempt.cost.total.usd if attempt.cost is not None else Decimal(0)
    return (ctx.counterfactual.total.usd if is_final else Decimal(0)) - cost


def row_extra(ctx: RequestContext, attempt: Attempt, *, is_final: bool) -> dict[str, str]:
    decision, outcome = ctx.decision, ctx.route_outcome
    extra = _counterfactual_extra(ctx, is_final=is_final) | _rollout_extra(ctx)
    if decision is None or decision.tier is None:
        return extra
    extra |= {"route_tier": decision.tier_of(attempt.deployment) or "-", "route_chosen": decision.tier}
    if outcome.cascade is not None:
        extra["cascade"] = outcome.cascade if is_final else "rejected" if attempt.status == "ok" else "failed"
        if outcome.check and not is_final:
            extra["cascade_check"] = outcome.check
    return extra


def _rollout_extra(ctx: RequestContext) -> dict[str, str]:
    """Every row of a request under a rollout names the rollout, the arm and the step (feedback and
    `margin report` find them there)."""
    rollout = ctx.rollout
    if rollout is None:
        return {}
    return {"rollout": rollout.rollout_id, "rollout_arm": rollout.arm, "rollout_step": str(rollout.step)}


def _counterfactual_extra(ctx: RequestContext, *, is_final: bool) -> dict[str, str]:
    """What priced this row's share of the counterfactual, so `margin reprice` can price it again:
    the premium deployment on the answering row, `none` on rows whose whole cost is overhead."""
    counterfactual = ctx.counterfactual
    if counterfactual is None:
        return {}
    premium = ctx.decision.premium if ctx.decision is not None else None
    answered = is_final and premium is not None and counterfactual.total.usd > 0
    return {"counterfactual": premium if answered and premium else "none"}


def observe_route(metrics: Metrics, ctx: RequestContext) -> None:
    """Per-tier request and spend counters, cascade outcomes, overflow, router latency."""
    decision, m = ctx.decision, metrics
    if decision is None:
        return
    if decision.tier is None:
        if ctx.counterfactual is not None and ctx.cost is not None:  # a cascade's verifier call
            m.child(m.route_spend, decision.model_group, "verifier").inc(ctx.cost.total.micro_usd)
        return
    group, outcome = decision.model_group, ctx.route_outcome
    answered = outcome.answered_tier or "-"
    m.child(m.route_requests, group, answered, decision.policy).inc()
    m.child(m.router_latency, decision.policy).observe(decision.elapsed_ms / 1000)
    for attempt in ctx.attempts:
        if attempt.cost is not None:
            tier = decision.tier_of(attempt.deployment) or "-"
            m.child(m.route_spend, group, tier).inc(attempt.cost.total.micro_usd)
    if ctx.counterfactual is not None:
        m.child(m.route_counterfactual, group).inc(ctx.counterfactual.total.micro_usd)
    if outcome.cascade is not None:
        m.child(m.cascades, group, decision.tier, outcome.cascade).inc()
    if outcome.overflow_from is not None and answered != outcome.overflow_from:
        m.child(m.route_overflow, group, outcome.overflow_from, answered).inc()
