"""`autoscaling:`: the signals a GPU fleet scales on, and the desired replica count per deployment
(docs/deploy.md, "Autoscaling signals")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from margin.config.base import Strict


class DeploymentScaling(Strict):
    """One self-hosted deployment's scaling policy and where its server's own metrics are read."""

    metrics_urls: list[str] = Field(
        default_factory=list,
        description="the model server's Prometheus /metrics, one per replica (or one Service URL); none: margin's own",
    )
    server: Literal["vllm", "tgi"] = Field("vllm", description="which metric names the /metrics page uses")
    target_queue_per_replica: float = Field(
        8.0, gt=0, description="requests running + waiting one replica should hold; more asks for another replica"
    )
    target_ttft_p95_s: float | None = Field(None, gt=0, description="TTFT p95 above this scales out proportionally")
    target_latency_p95_s: float | None = Field(None, gt=0, description="latency p95 above this scales out")
    min_replicas: int = Field(0, ge=0, description="0: the deployment may scale to zero when idle")
    max_replicas: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> DeploymentScaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) > max_replicas ({self.max_replicas})")
        return self


class AutoscalingConfig(Strict):
    """Signals are computed every `interval_s` by a background task, never on the request path."""

    interval_s: float = Field(5.0, gt=0, le=300, description="seconds between scrapes and signal updates")
    window_s: float = Field(60.0, gt=0, le=3600, description="sliding window of the rates and p95s")
    scrape_timeout_s: float = Field(2.0, gt=0, le=60, description="a model server's /metrics slower than this fails")
    stale_after_s: float = Field(30.0, gt=0, description="upstream metrics older than this are reported stale")
    deployments: dict[str, DeploymentScaling] = Field(
        default_factory=dict, description="keyed by deployment name; only these get a desired replica count"
    )


class BalanceConfig(Strict):
    """How a deployment with several `endpoints` (replicas of one model server) spreads its calls:
    power of two choices on in-flight calls, with prefix affinity (docs/deploy.md, "Several replicas")."""

    affinity_chars: int = Field(
        2048, ge=0, description="hash this many characters of the conversation's start to a preferred replica; 0: off"
    )
    affinity_slack: int = Field(
        4, ge=0, description="keep the preferred replica while it has at most this many more calls than the other pick"
    )
    failures: int = Field(1, ge=1, description="consecutive connection failures that take a replica out")
    cooldown_s: float = Field(10.0, gt=0, description="seconds a failed replica stays out before one call probes it")
