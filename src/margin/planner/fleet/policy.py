"""An autoscaling policy for one self-hosted tier, as the simulator reads it from YAML.

Impossible numbers are refused with the field's name (and the file's line, by `load_policies`):
negative or zero prices, zero throughput, min > max replicas, scale-to-zero without an overflow
tier to carry the requests that arrive while it is cold."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from margin.errors import ConfigError


class FleetPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    gpu: str = Field("gpu", description="label only: the GPU type priced below")
    gpus_per_replica: int = Field(1, ge=1)
    usd_per_gpu_hour: Decimal = Field(gt=0, description="on-demand price")
    spot_usd_per_gpu_hour: Decimal | None = Field(None, gt=0, description="spot price; spot_share uses it")
    spot_share: float = Field(0.0, ge=0, le=1, description="share of replicas on spot capacity")
    spot_interruptions_per_hour: float = Field(0.0, ge=0, description="per spot replica")
    spot_warning_min: int = Field(
        0,
        ge=0,
        le=30,
        description="notice before a spot replica is lost (AWS: 2); its replacement starts at the notice",
    )
    requests_per_minute_per_replica: float = Field(gt=0, description="throughput at the SLA")
    cold_start_min: int = Field(0, ge=0, description="minutes from scale-up to serving (paid, not serving)")
    min_replicas: int = Field(0, ge=0)
    max_replicas: int = Field(ge=1)
    target_utilization: float = Field(0.8, gt=0, le=1, description="scale so demand fills this share")
    scale_down_after_min: int = Field(10, ge=0, description="minutes below target before removing replicas")
    max_wait_min: int = Field(
        0, ge=0, le=60, description="minutes a request may wait for a replica before it overflows (0: at once)"
    )
    overflow_usd_per_request: Decimal | None = Field(
        None, ge=0, description="the API tier that takes what the replicas cannot; None rejects it"
    )

    @model_validator(mode="after")
    def _consistent(self) -> FleetPolicy:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})")
        if self.min_replicas == 0 and self.overflow_usd_per_request is None:
            raise ValueError("scale to zero (min_replicas: 0) needs an overflow tier: set overflow_usd_per_request")
        if self.spot_share > 0 and self.spot_usd_per_gpu_hour is None:
            raise ValueError("spot_share > 0 needs spot_usd_per_gpu_hour")
        return self

    def usd_per_replica_minute(self) -> Decimal:
        """The blended price of one replica-minute (on-demand and spot by spot_share)."""
        spot = self.spot_usd_per_gpu_hour if self.spot_usd_per_gpu_hour is not None else self.usd_per_gpu_hour
        share = Decimal(repr(self.spot_share))
        per_gpu_hour = self.usd_per_gpu_hour * (1 - share) + spot * share
        return per_gpu_hour * self.gpus_per_replica / 60


def load_policies(path: Path) -> list[FleetPolicy]:
    """`policies:` from a YAML file; a bad policy names its index, field and line."""
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    items = data.get("policies") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: expected a non-empty `policies:` list")
    policies = []
    for index, item in enumerate(items):
        try:
            policies.append(FleetPolicy.model_validate(item))
        except ValidationError as exc:
            raise ConfigError(_describe(path, root, index, exc)) from None
    names = [p.name for p in policies]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: policy names must be unique, got {names}")
    return policies


def _describe(path: Path, root: yaml.Node | None, index: int, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(policy)"
        lines.append(f"{path}:{_line(root, index, error['loc'])}: policies[{index}].{field}: {error['msg']}")
    return "invalid fleet policy\n  " + "\n  ".join(lines)


def _line(root: yaml.Node | None, index: int, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the policy's field (or of the policy when the field is absent)."""
    if not isinstance(root, yaml.MappingNode):
        return 1
    policies = next((v for k, v in root.value if getattr(k, "value", None) == "policies"), None)
    if not isinstance(policies, yaml.SequenceNode) or index >= len(policies.value):
        return root.start_mark.line + 1
    node: yaml.Node = policies.value[index]
    if loc and isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if getattr(key, "value", None) == str(loc[0]):
                return int(value.start_mark.line) + 1
    return int(node.start_mark.line) + 1
