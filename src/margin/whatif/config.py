"""The candidate configuration of a what-if run (a YAML file): tiers, cache, quality target, volumes."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator

from margin.config.base import Strict
from margin.errors import ConfigError
from margin.evals.items import GraderSpec, JudgeSettings


class TiersConfig(Strict):
    """The deployment answering today (`strong`) and the cheaper one the router may send to (`weak`)."""

    strong: str
    weak: str | None = None


class ExactCacheConfig(Strict):
    enabled: bool = True
    ttl_s: float = Field(default=3600.0, gt=0)
    # margin's default policy: only temperature-0 or seeded calls are cached (false: every call)
    deterministic_only: bool = True


class SemanticCacheConfig(Strict):
    enabled: bool = False
    threshold: float = Field(default=0.92, gt=0, le=1)
    guard: bool = True
    embedder: str = "hashing"  # "hashing" (built in) or "minilm" (the `semantic` extra)


class CacheConfig(Strict):
    exact: ExactCacheConfig = ExactCacheConfig()
    semantic: SemanticCacheConfig = SemanticCacheConfig()


class RoutingConfig(Strict):
    enabled: bool = True
    quality_target: float = Field(default=0.95, gt=0, le=1)  # of the strong tier's quality
    confidence: float = Field(default=0.95, gt=0.5, lt=1)  # one-sided, for the lower bound
    resamples: int = Field(default=2000, ge=100)
    min_labelled: int = Field(default=50, ge=10)
    # Distinct prompts the router is fitted on (out-of-fold scores); the others are scored by it.
    max_train_prompts: int = Field(default=20_000, ge=100)


class SamplingConfig(Strict):
    """Live sampling of the weak tier through a running margin (docs/whatif.md, "Live sampling")."""

    url: str = Field(min_length=1)  # margin's base URL, e.g. http://127.0.0.1:8080
    api_key: SecretStr | None = None  # a margin key; never printed
    # How an answer is graded against the recorded one (the reference): an eval grader spec.
    grader: GraderSpec = "normalised"
    judge: JudgeSettings | None = None  # the judge's settings, for `grader: judge`
    margin: float = Field(default=0.05, gt=0, lt=0.5)  # the interval half-width the sample is sized for
    max_samples: int = Field(default=1000, ge=1)  # the sample budget (distinct prompts)
    cost_cap_usd: Decimal | None = Field(default=None, ge=0)  # estimated from the catalog before any call
    concurrency: int = Field(default=4, ge=1, le=64)
    timeout_s: float = Field(default=120.0, gt=0)


class WhatifConfig(Strict):
    tiers: TiersConfig
    cache: CacheConfig = CacheConfig()
    routing: RoutingConfig = RoutingConfig()
    volume_multipliers: tuple[float, ...] = (1.0, 5.0, 10.0)
    # Model -> partial price entry (`input`, `output` in USD per million tokens, ...), over the catalog.
    prices: dict[str, dict[str, Any]] = Field(default_factory=dict)
    planner_profile: Path | None = None  # a planner profile: the self-hosting projection runs the planner
    sampling: SamplingConfig | None = None  # live calls to the weak tier through margin, graded

    @model_validator(mode="after")
    def _distinct(self) -> WhatifConfig:
        if self.tiers.weak is not None and self.tiers.weak == self.tiers.strong:
            raise ValueError("tiers.weak and tiers.strong must be different deployments")
        return self


def load_whatif_config(path: Path) -> WhatifConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the what-if config {path}: {exc}") from None
    return parse_whatif_config(data, str(path))


def parse_whatif_config(data: Any, where: str = "<config>") -> WhatifConfig:
    try:
        return WhatifConfig.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid what-if config {where}: {problems}") from None
