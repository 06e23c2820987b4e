"""The desired replica count of one deployment (docs/deploy.md, "The desired replica count").

    load     = upstream running + waiting      (summed over the fresh /metrics pages), or, with no
               fresh page, margin's own in-flight calls to the deployment
    by_queue = ceil(load / target_queue_per_replica)
    by_p95   = ceil(replicas_seen x p95 / target_p95)   for TTFT and latency, when a target is set
               and the window saw an answer (replicas_seen: fresh pages, at least 1)
    demand   = 1 when the window saw any call or any request that found no healthy endpoint
    desired  = clamp(max(by_queue, by_p95..., demand), min_replicas, max_replicas)

`demand` is what wakes a deployment scaled to zero: with no replica there is no page to read and
no call succeeds, but the requests that arrived meanwhile are counted (`unserved`).

A deployment with `scale_to_zero:` then follows its `idle_after_s` (`with_idle_after`), whatever the
window says: no request to it for idle_after_s and none in flight -> min_replicas (0 unless set:
reason `idle_after`); a request within idle_after_s -> at least 1 (reason `recent_request`), so a
window shorter than idle_after_s does not scale it to zero between two requests, and a longer one
does not keep a replica idling past idle_after_s."""

from __future__ import annotations

import math
from dataclasses import dataclass

from margin.autoscale.window import Rates
from margin.config.autoscale import DeploymentScaling


@dataclass(frozen=True, slots=True)
class Inputs:
    in_flight: int  # margin's calls open to the deployment now
    upstream_load: float | None  # running + waiting from fresh pages; None: none fresh
    replicas_seen: int  # fresh pages
    rates: Rates | None


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    load: float
    load_source: str  # "upstream" | "margin"
    reason: str  # which term decided: queue, ttft_p95, latency_p95, demand, min, max, idle, idle_after, recent_request


def desired_replicas(policy: DeploymentScaling, inputs: Inputs) -> Decision:
    source = "upstream" if inputs.upstream_load is not None else "margin"
    load = inputs.upstream_load if inputs.upstream_load is not None else float(inputs.in_flight)
    terms = {"queue": math.ceil(load / policy.target_queue_per_replica - 1e-9)}
    rates, seen = inputs.rates, max(1, inputs.replicas_seen)
    if rates is not None:
        for name, p95, target in (
            ("ttft_p95", rates.ttft_p95_s, policy.target_ttft_p95_s),
            ("latency_p95", rates.latency_p95_s, policy.target_latency_p95_s),
        ):
            if p95 is not None and target is not None:
                terms[name] = math.ceil(seen * p95 / target - 1e-9)
        if rates.attempts_per_s > 0 or rates.unserved_per_s > 0:
            terms["demand"] = 1
    if inputs.in_flight > 0:
        terms["demand"] = max(terms.get("demand", 0), 1)
    reason, wanted = max(terms.items(), key=lambda item: item[1])
    if wanted == 0:
        reason = "idle"
    if wanted < policy.min_replicas:
        return Decision(policy.min_replicas, load, source, "min")
    if wanted > policy.max_replicas:
        return Decision(policy.max_replicas, load, source, "max")
    return Decision(wanted, load, source, reason)


def with_idle_after(
    policy: DeploymentScaling, decision: Decision, *, idle_s: float | None, idle_after_s: float, in_flight: int
) -> Decision:
    """`decision` under scale_to_zero's idle_after_s; `idle_s`: seconds since the last request to the
    deployment (None: none since this replica started)."""
    if in_flight == 0 and (idle_s is None or idle_s >= idle_after_s):
        return Decision(policy.min_replicas, decision.load, decision.load_source, "idle_after")
    if decision.desired == 0 and policy.max_replicas >= 1:
        return Decision(1, decision.load, decision.load_source, "recent_request")
    return decision
