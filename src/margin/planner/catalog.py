"""The planner's catalog: GPUs, offers, models, throughput references, hosted APIs, managed services and the
assumptions, each figure with its source. Loaded from the packaged catalog.yaml; API token prices come from
metering's price catalog (see `margin.planner.api_prices`); a profile may override any figure."""

from __future__ import annotations

from decimal import Decimal
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, model_validator

from margin.metering._numbers import parse_usd
from margin.metering.catalog import PriceCatalog, load_builtin_catalog
from margin.planner.api_prices import priced_apis

Precision = Literal["fp16", "fp8", "int8", "int4"]
PRECISIONS: tuple[Precision, ...] = ("fp16", "fp8", "int8", "int4")
OVERRIDE_SOURCE = "profile override"


def _non_negative(value: object) -> Decimal:
    return parse_usd(value, what="planner catalog amount")


# Prices and other amounts: a Decimal read by metering's price parser (a string, an int, or a float's
# shortest repr; never negative), written to JSON as an exact decimal string.
NonNegativeDecimal = Annotated[
    Decimal, BeforeValidator(_non_negative), PlainSerializer(str, return_type=str, when_used="json")
]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(Frozen):
    what: str
    url: str | None = None
    repo: str | None = None
    path: str | None = None
    commit: str | None = None
    date: str
    reliability: str


class Figure(Frozen):
    """A physical or unitless assumption (efficiency, share, count)."""

    value: float
    source: str
    note: str = ""


class MoneyFigure(Frozen):
    value: NonNegativeDecimal
    source: str
    note: str = ""


class Assumptions(Frozen):
    gpu_memory_utilization: Figure
    runtime_overhead_gb_per_gpu: Figure
    kv_cache_bytes: Figure
    min_batch_sequences: Figure
    bandwidth_efficiency: Figure
    tp_scaling_exponent: Figure
    input_token_work: Figure
    prefill_mfu: Figure
    target_utilization: Figure
    spot_interruption_overhead: Figure
    reserved_discount: Figure
    hours_per_month: Figure
    max_tensor_parallel: Figure
    egress_bytes_per_token: Figure


class Costs(Frozen):
    engineer_monthly_usd: MoneyFigure
    storage_usd_per_gb_month: MoneyFigure
    egress_usd_per_gb: MoneyFigure


class HiddenCostProfile(Frozen):
    build_engineering_months: Figure
    run_fte: Figure
    on_call_monthly_usd: MoneyFigure
    maintenance_hours_per_month: Figure


class HiddenCosts(Frozen):
    amortization_months: Figure
    engineer_hours_per_month: Figure
    self_hosted: HiddenCostProfile
    managed: HiddenCostProfile


class PrecisionSpec(Frozen):
    bytes_per_param: float
    throughput_factor_native: float
    throughput_factor_emulated: float
    source: str
    note: str = ""


class GpuOffer(Frozen):
    provider: str
    instance: str
    region: str
    gpus_per_instance: int
    on_demand_usd_hr: NonNegativeDecimal
    spot_usd_hr_samples: tuple[NonNegativeDecimal, ...] = ()
    reserved_usd_hr: NonNegativeDecimal | None = None
    price_complete: bool = True
    source: str
    date: str
    note: str = ""


class Gpu(Frozen):
    name: str
    memory_gb: float
    mem_bw_gb_s: float
    fp16_tflops: float
    fp8_native: bool
    source: str
    flops_source: str
    note: str = ""
    offers: dict[str, GpuOffer]


class ModelSpec(Frozen):
    name: str
    params_b: float
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    max_context: int
    weights_gb: dict[Precision, float] = {}
    source: str
    context_source: str


class ThroughputRef(Frozen):
    model: str
    model_params_b: float
    gpu: str
    precision: Precision
    tensor_parallel: int
    output_tok_s: float
    input_len: float
    output_len: float
    lengths_source: str
    kind: str
    engine: str
    usable: bool = True
    ttft_ms: float | None = None
    source: str
    date: str
    note: str = ""


class ApiPrice(Frozen):
    provider: str
    model: str
    input_usd_per_mtok: NonNegativeDecimal
    output_usd_per_mtok: NonNegativeDecimal
    cached_input_usd_per_mtok: NonNegativeDecimal | None = None
    batch_input_usd_per_mtok: NonNegativeDecimal | None = None
    batch_output_usd_per_mtok: NonNegativeDecimal | None = None
    max_input_tokens: int
    regulated_ok: bool = False
    ttft_ms_p95: float | None = None
    deprecation_date: str | None = None
    reference_key: str | None = None
    price_version: str = ""  # the metering catalog version that priced it ("" for a profile's own API)
    price_source: str = ""  # the vendor page the metering catalog cites
    source: str
    date: str
    note: str = ""


class ManagedService(Frozen):
    name: str
    provider: str
    markup_pct: NonNegativeDecimal  # percent added to the GPU price
    min_instances: int
    scale_to_zero: bool
    active_gpu: str | None = None
    active_usd_per_gpu_hr: NonNegativeDecimal | None = None
    source: str
    date: str
    note: str = ""


class Catalog(Frozen):
    meta: dict[str, str]
    sources: dict[str, Source]
    assumptions: Assumptions
    costs: Costs
    hidden_costs: HiddenCosts
    precisions: dict[Precision, PrecisionSpec]
    gpus: dict[str, Gpu]
    models: dict[str, ModelSpec]
    throughput: dict[str, ThroughputRef]
    managed: dict[str, ManagedService]
    apis: dict[str, ApiPrice]

    @model_validator(mode="after")
    def _references_resolve(self) -> Catalog:
        known = set(self.sources) | {OVERRIDE_SOURCE}
        missing = sorted({s for s in _source_ids(self) if s not in known})
        if missing:
            raise ValueError(f"catalog cites unknown sources: {missing}")
        bad_gpu = [k for k, t in self.throughput.items() if t.gpu not in self.gpus]
        if bad_gpu:
            raise ValueError(f"throughput entries name unknown GPUs: {bad_gpu}")
        if set(self.precisions) != set(PRECISIONS):
            raise ValueError(f"precisions must be exactly {PRECISIONS}")
        return self


def _source_ids(catalog: Catalog) -> list[str]:
    ids = [f.source for f in catalog.assumptions.__dict__.values() if isinstance(f, Figure)]
    ids += [f.source for f in catalog.costs.__dict__.values() if isinstance(f, MoneyFigure)]
    ids += [p.source for p in catalog.precisions.values()]
    for gpu in catalog.gpus.values():
        ids += [gpu.source, gpu.flops_source] + [o.source for o in gpu.offers.values()]
    for model in catalog.models.values():
        ids += [model.source, model.context_source]
    ids += [t.source for t in catalog.throughput.values()] + [t.lengths_source for t in catalog.throughput.values()]
    ids += [a.source for a in catalog.apis.values()] + [m.source for m in catalog.managed.values()]
    return ids


def default_catalog_data() -> dict[str, Any]:
    """The packaged catalog as plain data (read from the package, never from ../shared)."""
    text = resources.files("margin.planner").joinpath("catalog.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError("catalog.yaml must be a mapping")
    return data


def load_catalog(
    overrides: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
    *,
    prices: PriceCatalog | None = None,
) -> Catalog:
    """Build a Catalog from the packaged data (or `base`), API token prices from `prices`, then `overrides`.

    `prices` is the metering catalog the ledger is billed with; the CLI passes the configured one (user
    prices file and config overrides included); the default is the catalog shipped with margin."""
    data = dict(base if base is not None else default_catalog_data())
    data["apis"] = priced_apis(data.get("apis") or {}, prices if prices is not None else load_builtin_catalog())
    if overrides:
        data = merge_overrides(data, overrides)
    return Catalog.model_validate(data)


def merge_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into `base`. Any mapping that carries a `source` and has a figure replaced gets
    source "profile override" unless the override names its own, so the plan never credits a changed number to
    the original publication. A bare scalar given for a {value, source} figure is promoted to that shape."""
    merged: dict[str, Any] = dict(base)
    changed = False
    for key, new in overrides.items():
        old = merged.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            merged[key] = merge_overrides(old, new)
        elif isinstance(old, dict) and "value" in old and not isinstance(new, dict):
            merged[key] = {
                "value": new,
                "source": OVERRIDE_SOURCE,
                "note": f"was {old['value']} ({old['source']})",
            }
        else:
            merged[key] = new
            changed = changed or (key != "source" and new != old)
    if changed and "source" in merged and "source" not in overrides:
        merged["source"] = OVERRIDE_SOURCE
    return merged
