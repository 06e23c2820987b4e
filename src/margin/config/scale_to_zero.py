"""A self-hosted deployment's `scale_to_zero:` (docs/deploy.md, "Scale to zero"): how margin treats it
while it has no healthy endpoint (cold), how it wakes it, and how long a request may wait for it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from margin.config.base import EnvSecret, Strict, parse_secret


class ColdWait(Strict):
    """Seconds a request waits for a cold deployment before it overflows to the next tier, per
    endpoint class (a key's endpoint_class); 0: overflow at once."""

    interactive: float = Field(0.0, ge=0, le=600)
    batch: float = Field(0.0, ge=0, le=3600)


class ScaleToZeroConfig(Strict):
    idle_after_s: float = Field(
        300.0, gt=0, description="no request for this long: the deployment asks for 0 replicas (desired_replicas)"
    )
    wake: Literal["webhook", "none"] = Field(
        "none", description="webhook: POST once per cold period; none: the demand metric (KEDA) wakes it"
    )
    webhook_url: Annotated[
        EnvSecret | None, Field(default=None, description="the wake webhook, as env:VAR (it may hold a token)")
    ]
    cold_start_s: float = Field(120.0, gt=0, description="how long a wake usually takes (reported; probes while cold)")
    probe_interval_s: float = Field(1.0, gt=0, le=60, description="health probe period while the deployment is cold")
    wait_max_s: ColdWait = ColdWait()

    _parse_url = field_validator("webhook_url", mode="before")(parse_secret)

    @model_validator(mode="after")
    def _webhook(self) -> ScaleToZeroConfig:
        if self.wake == "webhook" and self.webhook_url is None:
            raise ValueError("wake: webhook needs webhook_url (as env:VAR)")
        if self.wake == "none" and self.webhook_url is not None:
            raise ValueError("webhook_url is only used with wake: webhook")
        return self


def check_overflow(cold: set[str], groups: Sequence[tuple[str, Sequence[str], bool]]) -> None:
    """A deployment that scales to zero needs somewhere for requests to go while it is cold: a
    later deployment (the next tier) of each group it serves, or the group's fallbacks.
    `groups`: (name, deployments in route order, has fallbacks)."""
    for group, deployments, fallbacks in groups:
        for index, name in enumerate(deployments):
            if name not in cold:
                continue
            after = [d for d in deployments[index + 1 :] if d not in cold]
            if not after and not fallbacks:
                raise ValueError(
                    f"model group {group!r}: deployment {name!r} has scale_to_zero but nothing to overflow "
                    "to while it is cold (add a later tier or deployment that is always on, or fallbacks)"
                )
