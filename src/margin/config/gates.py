"""A model group's `gates:`: what a candidate deployment must show in an offline eval before any
traffic moves to it (docs/evals.md). Every gate is optional; the ones set must all pass."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from margin.config.base import Strict


class QualityGate(Strict):
    """Non-inferiority: the candidate passes when the lower confidence bound of its mean quality
    minus the baseline's (paired, item by item) is above `-max_drop`."""

    max_drop: float = Field(0.02, ge=0, le=1, description="Largest tolerated drop in mean quality (0-1 scale)")
    confidence: float = Field(
        0.95, gt=0.5, lt=1, description="Confidence of the one-sided lower bound on the difference"
    )


class GatesConfig(Strict):
    """Ceilings on the candidate's own measurements, plus the paired quality test."""

    quality: QualityGate | None = Field(default_factory=QualityGate)
    p95_latency_ms: float | None = Field(None, gt=0, description="Ceiling on the candidate's p95 latency")
    ttft_p95_ms: float | None = Field(None, gt=0, description="Ceiling on its p95 time to first token")
    error_rate: float | None = Field(None, ge=0, le=1, description="Ceiling on its share of failed requests")
    cost_per_success_usd: Decimal | None = Field(
        None, ge=0, description="Ceiling on its cost per successful request, in USD (exact decimal)"
    )
