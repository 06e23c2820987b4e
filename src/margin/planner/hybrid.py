"""Tiered routing priced honestly: cache hits, then each tier's share of the rest on its own option, against
sending everything to the premium API."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from margin.planner.amounts import to_decimal
from margin.planner.catalog import Catalog
from margin.planner.constraints import violation
from margin.planner.costing import CostLine, OptionCost, PricedDemand, api_monthly, hosted_monthly
from margin.planner.demand import ClassDemand
from margin.planner.evaluate import PreparedClass, PreparedHosted
from margin.planner.options import ApiOption
from margin.planner.profile import HybridMix, Profile

# Lines a second self-hosted tier shares with the first: one platform, one team, one rota.
PLATFORM_LINES = ("engineering to build (amortized)", "engineer to run", "on-call")


@dataclass(frozen=True)
class TierCost:
    name: str
    share_of_requests: float
    cost: OptionCost


@dataclass(frozen=True)
class HybridResult:
    class_name: str
    feasible: bool
    reason: str
    tiers: tuple[TierCost, ...]
    cache_line: CostLine
    total: Decimal
    premium_total: Decimal
    savings: Decimal
    constraint: str | None

    @property
    def savings_pct(self) -> float:
        return float(self.savings / self.premium_total * 100) if self.premium_total else 0.0


def price_hybrid(
    mix: HybridMix, prepared: PreparedClass, demand: ClassDemand, profile: Profile, catalog: Catalog
) -> HybridResult:
    premium = prepared.find(f"api:{mix.premium_api}")
    if not isinstance(premium, ApiOption):
        raise ValueError(f"hybrid premium_api {mix.premium_api!r} is not among the candidate APIs")
    premium_total = api_monthly(premium, PricedDemand.of(demand, catalog)).total
    hits = demand.requests_per_day * mix.cache_hit_rate
    days = to_decimal(catalog.assumptions.hours_per_month.value) / 24
    cache = CostLine(
        "response cache",
        mix.cache_usd_per_1k_hits * to_decimal(hits) / 1000 * days,
        f"hit rate {mix.cache_hit_rate:.0%}",
    )
    tiers = tuple(_tier(t.name, t.option, t.share, prepared, demand, mix, catalog) for t in mix.tiers)
    tiers = _share_platform(tiers)
    problems = [f"{t.name}: {t.cost.reason}" for t in tiers if not t.cost.feasible]
    constraint = next((f"{t.name}: {v}" for t in tiers if (v := _tier_violation(t, prepared, profile))), None)
    total = cache.amount + sum((t.cost.total for t in tiers), Decimal(0))
    return HybridResult(
        demand.name,
        not problems,
        "; ".join(problems),
        tiers,
        cache,
        total,
        premium_total,
        premium_total - total,
        constraint,
    )


def _tier_violation(tier: TierCost, prepared: PreparedClass, profile: Profile) -> str | None:
    found = prepared.find(tier.cost.option_id)
    api = found.api if isinstance(found, ApiOption) else None
    return violation(tier.cost.kind, api, profile)


def _tier(
    name: str,
    ref: str,
    share: float,
    prepared: PreparedClass,
    demand: ClassDemand,
    mix: HybridMix,
    catalog: Catalog,
) -> TierCost:
    tier_demand = PricedDemand.of(demand.scaled((1 - mix.cache_hit_rate) * share), catalog)
    kind, _, model = ref.partition(":")
    if kind in ("self_hosted", "managed") and model in catalog.models:
        cost = _best_hosted(kind, model, prepared, tier_demand)
    else:
        found = prepared.find(ref)
        if found is None:
            raise ValueError(f"hybrid tier {name!r}: option {ref!r} is not among the candidates")
        cost = (
            api_monthly(found, tier_demand)
            if isinstance(found, ApiOption)
            else hosted_monthly(found.option, found.capacity, tier_demand, found.pricing)
        )
    return TierCost(name, (1 - mix.cache_hit_rate) * share, cost)


def _best_hosted(kind: str, model: str, prepared: PreparedClass, demand: PricedDemand) -> OptionCost:
    matching: list[PreparedHosted] = [
        h for h in prepared.hosted if h.option.kind == kind and h.option.model_id == model
    ]
    costs = [hosted_monthly(h.option, h.capacity, demand, h.pricing) for h in matching]
    feasible = [c for c in costs if c.feasible]
    if feasible:
        return min(feasible, key=lambda c: c.total)
    if costs:
        return costs[0]
    raise ValueError(f"hybrid tier asks for {kind}:{model} but no such candidate exists")


def _share_platform(tiers: tuple[TierCost, ...]) -> tuple[TierCost, ...]:
    seen: set[str] = set()
    out: list[TierCost] = []
    for tier in tiers:
        cost = tier.cost
        if cost.kind in seen and cost.feasible:
            kept = tuple(line for line in cost.lines if line.name not in PLATFORM_LINES)
            total = sum((line.amount for line in kept), Decimal(0))
            cost = OptionCost(
                cost.option_id,
                cost.kind,
                cost.label,
                cost.class_name,
                True,
                "",
                kept,
                total,
                cost.tokens_per_month,
                None,
                cost.utilization,
                cost.peak_replicas,
                cost.gpus_per_replica,
                cost.instance_hours_per_day,
                cost.ttft_ms,
            )
        if cost.kind != "api":
            seen.add(cost.kind)
        out.append(TierCost(tier.name, tier.share_of_requests, cost))
    return tuple(out)
