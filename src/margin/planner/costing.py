"""Monthly cost of an option for one class's demand, as explicit lines. All money is Decimal."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from margin.planner.amounts import MILLION, per_million, to_decimal
from margin.planner.capacity import ReplicaCapacity
from margin.planner.catalog import ApiPrice, Catalog, HiddenCostProfile
from margin.planner.demand import ClassDemand
from margin.planner.options import ApiOption, HostedOption, OptionKind
from margin.planner.profile import Availability

# Loads that land exactly on a replica boundary must not round up because of float noise.
CEIL_SLACK = 1e-9


@dataclass(frozen=True)
class CostLine:
    name: str
    amount: Decimal
    note: str = ""


@dataclass(frozen=True)
class OptionCost:
    option_id: str
    kind: OptionKind
    label: str
    class_name: str
    feasible: bool
    reason: str
    lines: tuple[CostLine, ...]
    total: Decimal
    tokens_per_month: Decimal
    usd_per_mtok: Decimal | None
    utilization: float | None = None
    peak_replicas: int = 0
    gpus_per_replica: int = 0
    instance_hours_per_day: int = 0
    ttft_ms: float | None = None


@dataclass(frozen=True)
class HostedPricing:
    """Everything about a hosted option's bill that does not depend on volume, computed once."""

    instance_usd_hr: Decimal
    price_note: str
    replicas_per_instance: int
    min_replicas: int
    scale_to_zero: bool
    hours_per_month: Decimal
    fixed_lines: tuple[CostLine, ...]
    storage_usd_per_replica: Decimal
    egress_usd_per_request: Decimal
    target_utilization: float


def tokens_per_month(demand: ClassDemand, catalog: Catalog) -> Decimal:
    per_request = to_decimal(demand.input_tokens.mean) + to_decimal(demand.output_tokens.mean)
    return to_decimal(demand.requests_per_day) * per_request * _days_per_month(catalog)


def _days_per_month(catalog: Catalog) -> Decimal:
    return to_decimal(catalog.assumptions.hours_per_month.value) / 24


def api_cost_per_request(api: ApiPrice, demand: ClassDemand) -> Decimal:
    """Input at the cached price for the prompt-cache share; batch work at batch prices where offered."""
    batch = demand.kind == "batch"
    input_price = (api.batch_input_usd_per_mtok if batch else None) or api.input_usd_per_mtok
    output_price = (api.batch_output_usd_per_mtok if batch else None) or api.output_usd_per_mtok
    cached_price = api.cached_input_usd_per_mtok if api.cached_input_usd_per_mtok is not None else input_price
    cached = to_decimal(demand.prompt_cache_share)
    tokens_in = to_decimal(demand.input_tokens.mean)
    tokens_out = to_decimal(demand.output_tokens.mean)
    blended_in = (1 - cached) * input_price + cached * cached_price
    return (tokens_in * blended_in + tokens_out * output_price) / MILLION


def api_monthly(option: ApiOption, priced: PricedDemand) -> OptionCost:
    demand, tokens = priced.demand, priced.tokens
    total = api_cost_per_request(option.api, demand) * to_decimal(demand.requests_per_day) * priced.days_per_month
    feasible = demand.input_tokens.p95 <= option.api.max_input_tokens
    reason = "" if feasible else f"p95 input {demand.input_tokens.p95:.0f} > context {option.api.max_input_tokens}"
    published = option.api.ttft_ms_p95
    if feasible and demand.sla is not None and published is not None and published > demand.sla.ttft_ms:
        feasible, reason = False, f"published TTFT {published:.0f} ms > SLA {demand.sla.ttft_ms:.0f}"
    note = "batch prices" if demand.kind == "batch" and option.api.batch_input_usd_per_mtok else "list prices"
    lines = (CostLine("api tokens", total, f"{note}; prompt-cache share {demand.prompt_cache_share:g}"),)
    return OptionCost(
        option.id,
        "api",
        option.label,
        demand.name,
        feasible,
        reason,
        lines,
        total,
        tokens,
        per_million(total, tokens),
        ttft_ms=option.api.ttft_ms_p95,
    )


def hidden_cost_lines(profile: HiddenCostProfile, catalog: Catalog) -> tuple[CostLine, ...]:
    hidden = catalog.hidden_costs
    engineer = catalog.costs.engineer_monthly_usd.value
    build = to_decimal(profile.build_engineering_months.value) * engineer / to_decimal(hidden.amortization_months.value)
    run = to_decimal(profile.run_fte.value) * engineer
    hourly = engineer / to_decimal(hidden.engineer_hours_per_month.value)
    maintenance = to_decimal(profile.maintenance_hours_per_month.value) * hourly
    return (
        CostLine("engineering to build (amortized)", build, f"{profile.build_engineering_months.value:g} months"),
        CostLine("engineer to run", run, f"{profile.run_fte.value:g} FTE"),
        CostLine("on-call", profile.on_call_monthly_usd.value),
        CostLine("driver and model maintenance", maintenance, f"{profile.maintenance_hours_per_month.value:g} h"),
    )


def instance_price(option: HostedOption, catalog: Catalog) -> tuple[Decimal, str]:
    offer, a = option.offer, catalog.assumptions
    if option.managed is not None:
        markup = 1 + option.managed.markup_pct / 100
        return offer.on_demand_usd_hr * markup, f"on-demand x {markup} ({option.managed.name})"
    if option.pricing == "spot":
        worst = max(offer.spot_usd_hr_samples)
        overhead = 1 + to_decimal(a.spot_interruption_overhead.value)
        return worst * overhead, f"spot (highest sample {worst}) x {overhead} interruption overhead"
    if option.pricing == "reserved":
        if offer.reserved_usd_hr is not None:
            return offer.reserved_usd_hr, "reserved price"
        discount = to_decimal(a.reserved_discount.value)
        return offer.on_demand_usd_hr * (1 - discount), f"on-demand less {discount} reserved discount"
    return offer.on_demand_usd_hr, "on-demand"


def hosted_pricing(
    option: HostedOption,
    capacity: ReplicaCapacity,
    demand: ClassDemand,
    availability: Availability,
    catalog: Catalog,
) -> HostedPricing:
    price, note = instance_price(option, catalog)
    hidden = catalog.hidden_costs.managed if option.kind == "managed" else catalog.hidden_costs.self_hosted
    min_replicas = 1 if demand.kind == "batch" else availability.min_replicas
    if option.managed is not None:
        min_replicas = max(min_replicas, option.managed.min_instances)
    service_allows = option.managed.scale_to_zero if option.managed is not None else True
    egress_gb = to_decimal(demand.output_tokens.mean * catalog.assumptions.egress_bytes_per_token.value) / 10**9
    return HostedPricing(
        instance_usd_hr=price,
        price_note=note,
        replicas_per_instance=max(1, option.offer.gpus_per_instance // max(1, capacity.gpus)),
        min_replicas=min_replicas,
        scale_to_zero=availability.scale_to_zero and service_allows,
        hours_per_month=to_decimal(catalog.assumptions.hours_per_month.value),
        fixed_lines=hidden_cost_lines(hidden, catalog),
        storage_usd_per_replica=to_decimal(capacity.memory.weights_gb) * catalog.costs.storage_usd_per_gb_month.value,
        egress_usd_per_request=egress_gb * catalog.costs.egress_usd_per_gb.value,
        target_utilization=catalog.assumptions.target_utilization.value,
    )


def replicas_for_load(load_per_s: float, capacity_per_s: float, pricing: HostedPricing) -> int:
    if load_per_s <= 0:
        return 0 if pricing.scale_to_zero else pricing.min_replicas
    needed = math.ceil(load_per_s / (capacity_per_s * pricing.target_utilization) - CEIL_SLACK)
    return max(pricing.min_replicas, needed)


def instances_for(replicas: int, pricing: HostedPricing) -> int:
    return -(-replicas // pricing.replicas_per_instance)


@dataclass(frozen=True)
class Schedule:
    """Replicas per hour of the day for one capacity and pricing, and the instance-hours they bill."""

    replicas: tuple[int, ...]
    instance_hours_per_day: int

    @property
    def peak(self) -> int:
        return max(self.replicas)


def schedule_for(loads: tuple[float, ...], capacity_per_s: float, pricing: HostedPricing) -> Schedule:
    replicas = tuple(replicas_for_load(load, capacity_per_s, pricing) for load in loads)
    return Schedule(replicas, sum(instances_for(r, pricing) for r in replicas))


@dataclass(frozen=True)
class PricedDemand:
    """Volume-dependent quantities computed once per demand and shared by every option priced against it."""

    demand: ClassDemand
    loads: tuple[float, ...]
    tokens: Decimal
    days_per_month: Decimal

    @classmethod
    def of(cls, demand: ClassDemand, catalog: Catalog) -> PricedDemand:
        return cls(
            demand,
            demand.hourly_requests_per_s(),
            tokens_per_month(demand, catalog),
            _days_per_month(catalog),
        )


def hosted_monthly(
    option: HostedOption,
    capacity: ReplicaCapacity,
    priced: PricedDemand,
    pricing: HostedPricing,
    schedule: Schedule | None = None,
) -> OptionCost:
    demand, tokens = priced.demand, priced.tokens
    if not capacity.feasible:
        return _infeasible_cost(option, capacity, priced)
    schedule = schedule or schedule_for(priced.loads, capacity.requests_per_s, pricing)
    lines = (
        variable_lines(
            pricing,
            schedule.instance_hours_per_day,
            schedule.peak,
            demand.requests_per_day,
            priced.days_per_month,
        )
        + pricing.fixed_lines
    )
    total = sum((line.amount for line in lines), Decimal(0))
    provisioned = sum(schedule.replicas) * capacity.requests_per_s
    return OptionCost(
        option.id,
        option.kind,
        option.label,
        demand.name,
        True,
        "",
        lines,
        total,
        tokens,
        per_million(total, tokens),
        sum(priced.loads) / provisioned if provisioned else None,
        schedule.peak,
        capacity.gpus,
        schedule.instance_hours_per_day,
        capacity.ttft_s * 1000,
    )


def _infeasible_cost(option: HostedOption, capacity: ReplicaCapacity, priced: PricedDemand) -> OptionCost:
    """An option that cannot serve the demand: no price at all, so it can never look cheap."""
    return OptionCost(
        option.id,
        option.kind,
        option.label,
        priced.demand.name,
        False,
        capacity.reason,
        (),
        Decimal(0),
        priced.tokens,
        None,
        gpus_per_replica=capacity.gpus,
    )


def variable_lines(
    pricing: HostedPricing,
    instance_hours_per_day: int,
    peak_replicas: int,
    requests_per_day: float,
    days_per_month: Decimal,
) -> tuple[CostLine, ...]:
    compute = pricing.instance_usd_hr * instance_hours_per_day * pricing.hours_per_month / 24
    storage = pricing.storage_usd_per_replica * peak_replicas
    egress = pricing.egress_usd_per_request * to_decimal(requests_per_day) * days_per_month
    return (
        CostLine("GPU instances", compute, f"{instance_hours_per_day} instance-h/day at {pricing.price_note}"),
        CostLine("weights storage", storage, f"{peak_replicas} replicas"),
        CostLine("egress", egress),
    )
