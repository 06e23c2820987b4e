"""What the HTTP layer needs from the composition root, hung off `app.state.gateway`."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from margin.autoscale.service import Autoscaler
from margin.batch.tier import BatchTier
from margin.config.model import MarginConfig
from margin.metrics import Metrics
from margin.pipeline.handler import Pipeline
from margin.pipeline.tracing import NoTracer, Tracer
from margin.providers.base import Provider
from margin.providers.health_probes import HealthProbes
from margin.storage import LedgerStore
from margin.types import Principal


@dataclass(slots=True)
class GatewayState:
    config: MarginConfig
    pipeline: Pipeline
    providers: dict[str, Provider]
    metrics: Metrics
    ledger: LedgerStore
    admin_key: str | None
    max_body_bytes: int
    probes: HealthProbes  # /readyz: each deployment probed at a bounded rate
    metrics_token: str | None = None
    metrics_port: int | None = None  # /metrics is served on this listener only
    batches: BatchTier | None = None  # /v1/files and /v1/batches (None: batch.enabled is off)
    tracer: Tracer = field(default_factory=NoTracer)  # OpenTelemetry, when `tracing.enabled`
    autoscale: Autoscaler | None = None  # fleet signals and desired replicas (`autoscaling:`)
    started_at: float = field(default_factory=time.time)

    def model_cards(self, principal: Principal) -> list[dict[str, Any]]:
        """The model names `principal` may ask for, with the deployments that serve them."""
        created = int(self.started_at)
        cards = []
        for group in self.config.models:
            if not principal.may_use(group.name):
                continue
            for name in (group.name, *group.aliases):
                cards.append(
                    {
                        "id": name,
                        "object": "model",
                        "created": created,
                        "owned_by": "margin",
                        "deployments": group.deployments,
                    }
                )
        return cards

    async def health(self) -> dict[str, bool]:
        return await self.probes.health()

    def stuck(self) -> list[str]:
        """Deployments with an in-process worker that did not stop when asked (the local model's
        slot watchdog): a fault of this replica, not of an upstream, so readiness fails on it."""
        return [name for name, provider in self.providers.items() if _stuck_slots(provider)]


def _stuck_slots(provider: Provider) -> bool:
    stats = getattr(provider, "slot_stats", None)
    return callable(stats) and stats().stuck > 0


def state_of(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state
