"""Sensitivity: which assumption, moved by how much, flips a class's recommendation to another kind of
option."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from margin.planner.amounts import to_decimal
from margin.planner.catalog import ApiPrice, Catalog, GpuOffer, ManagedService, ThroughputRef
from margin.planner.demand import class_demands
from margin.planner.evaluate import prepare_class
from margin.planner.hybrid import price_hybrid
from margin.planner.options import Option, refresh_options
from margin.planner.profile import HybridMix, Profile
from margin.planner.recommend import contenders, recommend

FACTORS_DOWN = (0.75, 0.5, 0.25)
FACTORS_UP = (1.25, 1.5, 2.0, 4.0)
Variant = Callable[[Catalog, Profile, float], tuple[Catalog, Profile]]


@dataclass(frozen=True)
class Flip:
    factor: float
    kind: str | None
    label: str


@dataclass(frozen=True)
class SensitivityRow:
    class_name: str
    assumption: str
    baseline_kind: str | None
    down: Flip | None
    up: Flip | None


def _scale_gpu_prices(catalog: Catalog, profile: Profile, f: float) -> tuple[Catalog, Profile]:
    k = to_decimal(f)

    def offer(o: GpuOffer) -> GpuOffer:
        reserved = None if o.reserved_usd_hr is None else o.reserved_usd_hr * k
        spot = tuple(s * k for s in o.spot_usd_hr_samples)
        return o.model_copy(
            update={
                "on_demand_usd_hr": o.on_demand_usd_hr * k,
                "spot_usd_hr_samples": spot,
                "reserved_usd_hr": reserved,
            }
        )

    def service(m: ManagedService) -> ManagedService:
        active = None if m.active_usd_per_gpu_hr is None else m.active_usd_per_gpu_hr * k
        return m.model_copy(update={"active_usd_per_gpu_hr": active})

    gpus = {
        gid: g.model_copy(update={"offers": {oid: offer(o) for oid, o in g.offers.items()}})
        for gid, g in catalog.gpus.items()
    }
    managed = {mid: service(m) for mid, m in catalog.managed.items()}
    return catalog.model_copy(update={"gpus": gpus, "managed": managed}), profile


def _scale_api_prices(catalog: Catalog, profile: Profile, f: float) -> tuple[Catalog, Profile]:
    k = to_decimal(f)
    fields = (
        "input_usd_per_mtok",
        "output_usd_per_mtok",
        "cached_input_usd_per_mtok",
        "batch_input_usd_per_mtok",
        "batch_output_usd_per_mtok",
    )

    def api(a: ApiPrice) -> ApiPrice:
        update: dict[str, Decimal | None] = {}
        for name in fields:
            value = getattr(a, name)
            update[name] = None if value is None else value * k
        return a.model_copy(update=update)

    return catalog.model_copy(update={"apis": {aid: api(a) for aid, a in catalog.apis.items()}}), profile


def _scale_throughput(catalog: Catalog, profile: Profile, f: float) -> tuple[Catalog, Profile]:
    def ref(r: ThroughputRef) -> ThroughputRef:
        return r.model_copy(update={"output_tok_s": r.output_tok_s * f})

    return catalog.model_copy(update={"throughput": {k: ref(r) for k, r in catalog.throughput.items()}}), profile


def _scale_engineer_cost(catalog: Catalog, profile: Profile, f: float) -> tuple[Catalog, Profile]:
    figure = catalog.costs.engineer_monthly_usd
    costs = catalog.costs.model_copy(
        update={"engineer_monthly_usd": figure.model_copy(update={"value": figure.value * to_decimal(f)})}
    )
    return catalog.model_copy(update={"costs": costs}), profile


def _scale_volume(catalog: Catalog, profile: Profile, f: float) -> tuple[Catalog, Profile]:
    return catalog, profile.model_copy(update={"requests_per_day": profile.requests_per_day * f})


VARIANTS: dict[str, Variant] = {
    "GPU prices": _scale_gpu_prices,
    "API prices": _scale_api_prices,
    "throughput per GPU": _scale_throughput,
    "engineer cost": _scale_engineer_cost,
    "request volume": _scale_volume,
}


def _decide(catalog: Catalog, profile: Profile, class_name: str, keep: tuple[Option, ...]) -> Flip:
    options = refresh_options(keep, catalog)
    demand = next(d for d in class_demands(profile, profile.growth[0]) if d.name == class_name)
    prepared = prepare_class(options, demand, profile.availability, catalog)
    hybrid = price_hybrid(profile.hybrid, prepared, demand, profile, catalog) if profile.hybrid else None
    rec = recommend(
        contenders(prepared.costs_at(demand, catalog), hybrid, prepared, profile),
        class_name,
        profile.growth[0],
        demand.sla.ttft_ms if demand.sla else None,
    )
    return Flip(1.0, rec.kind, rec.label)


def sensitivity_rows(
    catalog: Catalog, profile: Profile, class_name: str, keep: tuple[Option, ...], hybrid: HybridMix | None
) -> tuple[SensitivityRow, ...]:
    """Re-decide with each assumption scaled by the factors, nearest first; only the contenders are
    re-priced."""
    profile = profile.model_copy(update={"hybrid": hybrid})
    baseline = _decide(catalog, profile, class_name, keep).kind
    rows = []
    for name, variant in VARIANTS.items():
        down = _first_flip(variant, catalog, profile, class_name, keep, baseline, FACTORS_DOWN)
        up = _first_flip(variant, catalog, profile, class_name, keep, baseline, FACTORS_UP)
        rows.append(SensitivityRow(class_name, name, baseline, down, up))
    return tuple(rows)


def _first_flip(
    variant: Variant,
    catalog: Catalog,
    profile: Profile,
    class_name: str,
    keep: tuple[Option, ...],
    baseline: str | None,
    factors: Sequence[float],
) -> Flip | None:
    for factor in factors:
        varied_catalog, varied_profile = variant(catalog, profile, factor)
        decision = _decide(varied_catalog, varied_profile, class_name, keep)
        if decision.kind != baseline:
            return Flip(factor, decision.kind, decision.label)
    return None
