"""The workload profile: what is being served, how much, when, under which constraints."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from margin.planner.catalog import PRECISIONS, NonNegativeDecimal, Precision

Sensitivity = Literal["public", "internal", "regulated"]
OpsCapacity = Literal["none", "limited", "dedicated"]
ClassKind = Literal["interactive", "batch"]
Pricing = Literal["on_demand", "spot", "reserved"]
HOURS = 24


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TokenStats(Frozen):
    mean: float = Field(gt=0)
    p95: float = Field(gt=0)

    @model_validator(mode="after")
    def _p95_not_below_mean(self) -> TokenStats:
        if self.p95 < self.mean:
            raise ValueError(f"p95 ({self.p95}) is below the mean ({self.mean})")
        return self


class LatencySla(Frozen):
    ttft_ms: float = Field(gt=0, description="time to first token at p95")
    p95_ms: float = Field(gt=0, description="end-to-end request latency at p95")

    @model_validator(mode="after")
    def _ttft_within_total(self) -> LatencySla:
        if self.ttft_ms >= self.p95_ms:
            raise ValueError("ttft_ms must be below p95_ms")
        return self


class WorkloadClass(Frozen):
    name: str
    kind: ClassKind
    share: float = Field(gt=0, le=1)


class Availability(Frozen):
    min_replicas: int = Field(default=2, ge=1, description="replicas kept up in any hour with traffic")
    scale_to_zero: bool = Field(default=False, description="idle hours may run zero replicas (cold starts OK)")


class Candidates(Frozen):
    """Which options to price. None means every entry of the catalog."""

    apis: tuple[str, ...] | None = None
    models: tuple[str, ...] | None = None
    gpus: tuple[str, ...] | None = None
    providers: tuple[str, ...] | None = None
    precisions: tuple[Precision, ...] = PRECISIONS
    pricing: tuple[Pricing, ...] = ("on_demand", "spot")
    managed: tuple[str, ...] | None = None
    include_incomplete_prices: bool = False
    compare_to: str | None = Field(default=None, description="API for crossovers; default: cheapest allowed")


class HybridTier(Frozen):
    name: str
    option: str = Field(description="an option id, api:<id>, or self_hosted:<model> / managed:<model> for the best")
    share: float = Field(ge=0, le=1)
    # For --from-ledger: the cost_ranks of the deployments that serve this tier (the ledger records the
    # rank, not the tier's name). A tier whose name is a rank ("1") matches that rank without this.
    cost_ranks: tuple[int, ...] = ()


class HybridMix(Frozen):
    cache_hit_rate: float = Field(default=0.0, ge=0, lt=1)
    cache_usd_per_1k_hits: NonNegativeDecimal = Decimal(0)
    premium_api: str
    tiers: tuple[HybridTier, ...]

    @model_validator(mode="after")
    def _shares_sum_to_one(self) -> HybridMix:
        total = sum(t.share for t in self.tiers)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"tier shares of the non-cached traffic must sum to 1, got {total}")
        return self


class Profile(Frozen):
    name: str = "workload"
    requests_per_day: float = Field(gt=0)
    input_tokens: TokenStats
    output_tokens: TokenStats
    hourly_weights: tuple[float, ...] | None = None
    peak_to_average: float | None = Field(default=None, ge=1, le=HOURS)
    growth: tuple[float, ...] = (1.0, 5.0, 10.0)
    sla: LatencySla
    sensitivity: Sensitivity = "internal"
    ops_capacity: OpsCapacity = "limited"
    classes: tuple[WorkloadClass, ...] = (WorkloadClass(name="interactive", kind="interactive", share=1.0),)
    prompt_cache_share: float = Field(default=0.0, ge=0, le=1, description="input share billed at cached price")
    availability: Availability = Availability()
    candidates: Candidates = Candidates()
    hybrid: HybridMix | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        if self.hourly_weights is not None:
            if len(self.hourly_weights) != HOURS or min(self.hourly_weights) < 0 or sum(self.hourly_weights) <= 0:
                raise ValueError("hourly_weights needs 24 non-negative numbers with a positive sum")
            if self.peak_to_average is not None:
                raise ValueError("give hourly_weights or peak_to_average, not both")
        if abs(sum(c.share for c in self.classes) - 1.0) > 1e-6:
            raise ValueError("workload class shares must sum to 1")
        if len({c.name for c in self.classes}) != len(self.classes):
            raise ValueError("workload class names must be unique")
        if not self.growth or min(self.growth) <= 0:
            raise ValueError("growth scenarios must be positive multipliers")
        return self

    def hourly_shares(self) -> tuple[float, ...]:
        """Share of a day's requests arriving in each hour (sums to 1)."""
        if self.hourly_weights is not None:
            total = sum(self.hourly_weights)
            return tuple(w / total for w in self.hourly_weights)
        ratio = self.peak_to_average or 1.0
        # Only the peak-to-average ratio is known: one peak hour at `ratio` times the mean, the other 23
        # equal.
        # This keeps the peak (what sizes replicas) exact and assumes no idle hours (no scale-to-zero credit).
        rest = (HOURS - ratio) / (HOURS - 1) / HOURS
        return tuple(ratio / HOURS if h == 14 else rest for h in range(HOURS))

    def peak_factor(self) -> float:
        return max(self.hourly_shares()) * HOURS


def load_profile(path: Path) -> Profile:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a profile must be a YAML mapping")
    return Profile.model_validate(data)
