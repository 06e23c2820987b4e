"""plan(profile, catalog) -> Plan: the whole analysis as pure functions over two immutable inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from margin.planner.catalog import ApiPrice, Catalog, merge_overrides
from margin.planner.constraints import violation
from margin.planner.costing import OptionCost, api_cost_per_request
from margin.planner.crossover import Crossover, find_crossover
from margin.planner.demand import ClassDemand, class_demands
from margin.planner.evaluate import PreparedClass, PreparedHosted, prepare_class
from margin.planner.hybrid import HybridResult, price_hybrid
from margin.planner.ledger_input import LedgerSummary
from margin.planner.options import ApiOption, Option, enumerate_options
from margin.planner.profile import HybridMix, HybridTier, Profile
from margin.planner.recommend import Recommendation, contenders, recommend
from margin.planner.sensitivity import SensitivityRow, sensitivity_rows

Step = Callable[[], None]  # told when a unit of planning work is done (progress)

CONTENDERS_PER_KIND = 3


@dataclass(frozen=True)
class ScenarioResult:
    growth: float
    demand: ClassDemand
    costs: tuple[OptionCost, ...]
    hybrid: HybridResult | None
    recommendation: Recommendation


@dataclass(frozen=True)
class ClassPlan:
    name: str
    kind: str
    compare_to: str | None
    apis: tuple[ApiOption, ...]
    hosted: tuple[PreparedHosted, ...]
    scenarios: tuple[ScenarioResult, ...]
    crossovers: tuple[Crossover, ...]
    sensitivity: tuple[SensitivityRow, ...]

    def api_price(self, option_id: str) -> ApiPrice:
        return next(a.api for a in self.apis if a.id == option_id)

    def crossover_for(self, option_id: str) -> Crossover | None:
        return next((c for c in self.crossovers if c.option_id == option_id), None)


@dataclass(frozen=True)
class Plan:
    profile: Profile
    catalog: Catalog
    classes: tuple[ClassPlan, ...]
    measured: LedgerSummary | None = None  # what --from-ledger read, when the profile was measured


def effective_catalog(profile: Profile, catalog: Catalog) -> Catalog:
    if not profile.overrides:
        return catalog
    return Catalog.model_validate(merge_overrides(catalog.model_dump(), profile.overrides))


def plan(
    profile: Profile, catalog: Catalog, measured: LedgerSummary | None = None, *, on_step: Step | None = None
) -> Plan:
    """`on_step` is called after each scenario of each class and after each class's crossovers and
    sensitivity: `plan_steps(profile)` times in all (a progress bar's measure)."""
    catalog = effective_catalog(profile, catalog)
    options = enumerate_options(profile.candidates, catalog)
    classes = []
    for demand in class_demands(profile):
        prepared = prepare_class(options, demand, profile.availability, catalog)
        classes.append(_plan_class(prepared, options, profile, catalog, on_step or _no_step))
    return Plan(profile, catalog, tuple(classes), measured)


def plan_steps(profile: Profile) -> int:
    return len(class_demands(profile)) * (len(profile.growth) + 1)


def _no_step() -> None:
    return None


def _plan_class(
    prepared: PreparedClass, options: tuple[Option, ...], profile: Profile, catalog: Catalog, on_step: Step
) -> ClassPlan:
    demand = prepared.demand
    scenarios = []
    for growth in profile.growth:
        scenarios.append(_scenario(prepared, demand.scaled(growth), growth, profile, catalog))
        on_step()
    compare_to = _compare_to(prepared, scenarios[0].costs, profile)
    crossovers = _crossovers(prepared, compare_to, catalog)
    ids = _contender_ids(scenarios[0], compare_to)
    keep = tuple(o for o in options if o.id in ids)
    mix = _concrete_mix(profile.hybrid, scenarios[0].hybrid)
    rows = sensitivity_rows(catalog, profile, demand.name, keep, mix)
    on_step()
    return ClassPlan(
        demand.name, demand.kind, compare_to, prepared.apis, prepared.hosted, tuple(scenarios), crossovers, rows
    )


def _scenario(
    prepared: PreparedClass, demand: ClassDemand, growth: float, profile: Profile, catalog: Catalog
) -> ScenarioResult:
    costs = prepared.costs_at(demand, catalog)
    hybrid = price_hybrid(profile.hybrid, prepared, demand, profile, catalog) if profile.hybrid else None
    sla = demand.sla.ttft_ms if demand.sla else None
    rec = recommend(contenders(costs, hybrid, prepared, profile), demand.name, growth, sla)
    return ScenarioResult(growth, demand, costs, hybrid, rec)


def _compare_to(prepared: PreparedClass, costs: tuple[OptionCost, ...], profile: Profile) -> str | None:
    """The API a hosted option must beat: the profile's choice, else the cheapest feasible allowed API
    (else the
    cheapest feasible API at all, so regulated profiles still see the comparison)."""
    if profile.candidates.compare_to is not None:
        wanted = f"api:{profile.candidates.compare_to}"
        if prepared.find(wanted) is None:
            raise ValueError(f"compare_to {profile.candidates.compare_to!r} is not among the candidate APIs")
        return profile.candidates.compare_to
    apis = {a.id: a for a in prepared.apis}
    feasible = [c for c in costs if c.kind == "api" and c.feasible]
    allowed = [c for c in feasible if violation("api", apis[c.option_id].api, profile) is None]
    pool = allowed or feasible
    return min(pool, key=lambda c: c.total).option_id.removeprefix("api:") if pool else None


def _crossovers(prepared: PreparedClass, compare_to: str | None, catalog: Catalog) -> tuple[Crossover, ...]:
    if compare_to is None:
        return ()
    api = prepared.find(f"api:{compare_to}")
    assert isinstance(api, ApiOption)
    per_request = api_cost_per_request(api.api, prepared.demand)
    return tuple(
        find_crossover(h.option.id, compare_to, h.capacity, prepared.demand, h.pricing, per_request, catalog)
        for h in prepared.hosted
        if h.capacity.feasible
    )


def _contender_ids(scenario: ScenarioResult, compare_to: str | None) -> frozenset[str]:
    keep: set[str] = set()
    for kind in ("api", "self_hosted", "managed"):
        ranked = sorted((c for c in scenario.costs if c.kind == kind and c.feasible), key=lambda c: c.total)
        keep.update(c.option_id for c in ranked[:CONTENDERS_PER_KIND])
    if compare_to is not None:
        keep.add(f"api:{compare_to}")
    if scenario.hybrid is not None:
        keep.update(t.cost.option_id for t in scenario.hybrid.tiers)
    return frozenset(keep)


def _concrete_mix(mix: HybridMix | None, priced: HybridResult | None) -> HybridMix | None:
    """Pin each hybrid tier to the option it resolved to, so sensitivity re-prices the same deployment."""
    if mix is None or priced is None:
        return mix
    tiers = tuple(
        HybridTier(name=t.name, option=p.cost.option_id, share=t.share)
        for t, p in zip(mix.tiers, priced.tiers, strict=True)
    )
    return mix.model_copy(update={"tiers": tiers})
