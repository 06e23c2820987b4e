"""Policies for the simulator from a plan's self-hosted options: the planner's capacity model gives
each replica's throughput at the SLA and its price, the class's API (the one the plan compares
against) prices the overflow. This is how the planner's steady-state options get a time-varying
check: replay real or synthetic per-minute demand against each."""

from __future__ import annotations

from decimal import Decimal

from margin.errors import ConfigError
from margin.planner.costing import api_cost_per_request
from margin.planner.evaluate import PreparedHosted
from margin.planner.fleet.policy import FleetPolicy
from margin.planner.plan import ClassPlan, Plan


def policies_from_plan(
    plan: Plan, *, class_name: str | None = None, cold_start_min: int = 5, max_replicas: int = 50, limit: int = 5
) -> list[FleetPolicy]:
    """One policy per feasible self-hosted option of the class (the first class unless named), the
    `limit` cheapest at steady state first."""
    chosen = _class(plan, class_name)
    if chosen.compare_to is None:
        raise ConfigError(f"class {chosen.name!r} has no API option to overflow to: add one to candidates.apis")
    baseline = chosen.scenarios[0]
    overflow = api_cost_per_request(chosen.api_price(f"api:{chosen.compare_to}"), baseline.demand)
    costs = {c.option_id: c.total for c in baseline.costs if c.feasible}
    hosted = sorted((h for h in chosen.hosted if h.option.id in costs), key=lambda h: costs[h.option.id])
    if not hosted:
        raise ConfigError(f"class {chosen.name!r} has no feasible self-hosted option to simulate")
    return [_policy(h, overflow, cold_start_min, max_replicas) for h in hosted[:limit]]


def _class(plan: Plan, class_name: str | None) -> ClassPlan:
    for candidate in plan.classes:
        if class_name is None or candidate.name == class_name:
            return candidate
    known = ", ".join(c.name for c in plan.classes)
    raise ConfigError(f"the plan has no class {class_name!r} (it has: {known})")


def _policy(hosted: PreparedHosted, overflow: Decimal, cold_start_min: int, max_replicas: int) -> FleetPolicy:
    pricing, capacity = hosted.pricing, hosted.capacity
    gpus = max(1, capacity.gpus)
    minimum = 0 if pricing.scale_to_zero else pricing.min_replicas
    return FleetPolicy(
        name=hosted.option.id,
        gpu=hosted.option.gpu_id,
        gpus_per_replica=gpus,
        usd_per_gpu_hour=pricing.instance_usd_hr / pricing.replicas_per_instance / gpus,
        requests_per_minute_per_replica=capacity.requests_per_s * 60,
        cold_start_min=cold_start_min,
        min_replicas=min(minimum, max_replicas),
        max_replicas=max_replicas,
        target_utilization=pricing.target_utilization,
        overflow_usd_per_request=overflow,
    )
