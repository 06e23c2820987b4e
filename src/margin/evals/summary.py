"""A run's summary: quality (weighted mean, 95% interval, per tag), latency and time to first token,
error rate, cost per request and per successful request (exact decimals), tokens, and how the
judge's two orders came out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from margin.evals.results import ItemResult, RunResults
from margin.evals.stats import Interval, mean_interval, percentile, weighted_mean


@dataclass(frozen=True, slots=True)
class QualityFigure:
    items: int
    mean: float | None
    interval: Interval | None
    pass_rate: float | None


@dataclass(frozen=True, slots=True)
class CostFigure:
    """Money from margin's x-margin-cost-usd. `complete` is False when some answered call reported no
    cost (a streamed run, or a gateway that did not say): the totals then cover only the priced calls
    and are never presented as the whole."""

    total_usd: Decimal
    priced: int
    complete: bool
    per_request_usd: Decimal | None
    per_success_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    set_name: str
    model: str
    requests: int
    errors: int
    quality: QualityFigure
    by_tag: dict[str, QualityFigure]
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    ttft_p50_ms: float | None
    ttft_p95_ms: float | None
    cost: CostFigure
    input_tokens: int
    output_tokens: int
    undecided: int  # graded items without a score (they count as failed)
    judge: dict[str, int] = field(default_factory=dict)  # agreed / disagreed / unparseable / error
    run_params: dict[str, Any] | None = None  # the run's settings (None: not recorded, an older file)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def successes(self) -> int:
        return self.requests - self.errors


def quality_of(rows: list[ItemResult], level: float = 0.95) -> QualityFigure:
    scores = [r.quality for r in rows]
    weights = [r.weight for r in rows]
    passed = [1.0 if r.passed and r.ok else 0.0 for r in rows]
    return QualityFigure(
        items=len(rows),
        mean=weighted_mean(scores, weights),
        interval=mean_interval(scores, weights, level=level),
        pass_rate=weighted_mean(passed, weights),
    )


def cost_of(rows: list[ItemResult]) -> CostFigure:
    answered = [r for r in rows if r.ok]
    priced = [r.cost_usd for r in rows if r.cost_usd is not None]
    total = sum(priced, Decimal(0))
    complete = bool(rows) and all(r.cost_usd is not None for r in answered)
    return CostFigure(
        total_usd=total,
        priced=len(priced),
        complete=complete,
        per_request_usd=total / len(rows) if complete else None,
        per_success_usd=total / len(answered) if complete and answered else None,
    )


def summarise(results: RunResults, level: float = 0.95) -> RunSummary:
    rows = list(results)
    answered = [r for r in rows if r.ok]
    latencies = [r.latency_ms for r in answered]
    ttfts = [r.ttft_ms for r in answered if r.ttft_ms is not None]
    tags = sorted({t for r in rows for t in r.tags})
    return RunSummary(
        set_name=results.set_name,
        model=results.model,
        requests=len(rows),
        errors=len(rows) - len(answered),
        quality=quality_of(rows, level),
        by_tag={tag: quality_of([r for r in rows if tag in r.tags], level) for tag in tags},
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        ttft_p50_ms=percentile(ttfts, 50),
        ttft_p95_ms=percentile(ttfts, 95),
        cost=cost_of(rows),
        input_tokens=sum(r.input_tokens or 0 for r in rows),
        output_tokens=sum(r.output_tokens or 0 for r in rows),
        undecided=sum(1 for r in answered if r.score is None),
        judge=dict(Counter(r.judge for r in rows if r.judge is not None)),
        run_params=results.run_params,
    )
