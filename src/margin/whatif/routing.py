"""The routing lever: fit margin's learned router on the graded cache misses and project savings
against quality along its threshold curve, with bootstrap intervals (margin.evals.stats).

Every labelled miss has the recorded (strong) answer's grade and a graded answer of the weak tier.
Scores are out-of-fold (each prompt scored by heads fitted without its fold), so the curve is not
measured on the data the router was fitted to. Repeats of one prompt move together: the bootstrap
resamples distinct prompts, each weighted by how often it was sent.

The operating point is the lowest threshold (the most traffic to the weak tier) whose one-sided
lower confidence bound of quality / strong-only quality reaches the target.

Misses without grades (a live sample covers only part of them) are scored by the router fitted on
the graded ones and priced at each threshold (the weak tier on their recorded tokens): the curve's
costs and shares cover every miss the strong tier answered; its quality is the graded sample's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray

from margin.evals.stats import SEED
from margin.routing.learned.features import FeatureSpec
from margin.routing.learned.outcomes import outcomes_from_records
from margin.routing.learned.task_heads import TaskHeadScorer
from margin.routing.learned.training import TrainingConfig, train_scorer
from margin.whatif.config import RoutingConfig
from margin.whatif.traffic import Record, last_user_prompt

Vector = NDArray[np.float64]
CURVE_POINTS = 11
# A what-if run fits once on one team's sample: the hashing features and one point of each grid keep
# fitting to seconds (2,051 RouteLLM prompts: 6 s, out-of-fold APGR 0.66 against 0.66 with the
# default static embedder and full grids, which took 100 s on this machine).
_TRAINING = TrainingConfig(features=FeatureSpec(embedder="hashing"), l2_grid=(1000.0,), word_alphas=(10.0,))


@dataclass(frozen=True)
class RoutedRow:
    """One labelled miss: its prompt group, grades and exact costs on both tiers."""

    index: int  # position in the replayed records
    group: int
    strong_cost: Decimal
    weak_cost: Decimal


@dataclass(frozen=True)
class CurvePoint:
    weak_share: float  # of the labelled misses' requests sent to the weak tier
    threshold: float  # strong iff score >= threshold
    cost: Decimal
    quality_ratio: float
    low: float
    high: float


@dataclass(frozen=True)
class _Groups:
    prompts: list[str]
    tasks: list[str]
    weight: Vector
    strong: Vector
    weak: Vector
    keys: dict[tuple[str, str], int]


@dataclass(frozen=True)
class RoutingProjection:
    rows: tuple[RoutedRow, ...]
    scores: Vector  # by prompt group, out-of-fold
    point: CurvePoint
    curve: tuple[CurvePoint, ...]
    strong_quality: float
    weak_quality: float
    confidence: float
    target: float
    groups: _Groups
    graded_requests: int = 0  # of `rows`, those with grades of both tiers (the rest are scored only)
    # The router alone, without the cache: every graded request (cache hits included) at the same
    # threshold; its quality is that of the curve on the misses, not bootstrapped again.
    alone_saved: Decimal = Decimal(0)

    def alone(self, records: Sequence[Record], graded: Sequence[tuple[int, Decimal, Decimal, float]]) -> Decimal:
        """What the operating point's threshold saves on every graded request, hits included."""
        saved = Decimal(0)
        for index, cost, weak_cost, _ in graded:
            record = records[index]
            group = self.groups.keys.get((record.task, last_user_prompt(record)))
            if group is not None and self.scores[group] < self.point.threshold:
                saved += cost - weak_cost
        return saved

    def routed_weak(self) -> set[int]:
        """Record positions the operating point sends to the weak tier."""
        return {r.index for r in self.rows if self.scores[r.group] < self.point.threshold}


def project_routing(
    records: Sequence[Record],
    rows: Sequence[RoutedRow],
    groups: _Groups,
    config: RoutingConfig,
    unlabelled: Sequence[tuple[int, Decimal, Decimal]] = (),
) -> RoutingProjection:
    """`unlabelled`: (record position, strong cost, weak cost) of the misses without grades."""
    labelled, scorer = _out_of_fold_scores(groups, config.max_train_prompts)
    order = np.argsort(-labelled, kind="stable")
    boundaries = _tie_boundaries(labelled[order])
    lows = _Bootstrap(groups, order, config)
    every, scores, keys = _extend(records, rows, groups, labelled, scorer, unlabelled)
    groups = replace(groups, keys=keys)

    def at(k: int) -> CurvePoint:
        return _point(k, labelled, order, (every, scores), groups, lows)

    point = at(int(boundaries[_first_feasible(boundaries, lows, config.quality_target)]))
    curve = tuple(
        at(int(boundaries[int(np.searchsorted(boundaries, round(f * len(order))))]))
        for f in np.linspace(0, 1, CURVE_POINTS)
    )
    total = float(groups.weight.sum())
    return RoutingProjection(
        rows=tuple(every),
        scores=scores,
        point=point,
        curve=curve,
        strong_quality=float(groups.weight @ groups.strong) / total,
        weak_quality=float(groups.weight @ groups.weak) / total,
        confidence=config.confidence,
        target=config.quality_target,
        groups=groups,
        graded_requests=len(rows),
    )


def _extend(
    records: Sequence[Record],
    rows: Sequence[RoutedRow],
    groups: _Groups,
    labelled: Vector,
    scorer: TaskHeadScorer,
    unlabelled: Sequence[tuple[int, Decimal, Decimal]],
) -> tuple[list[RoutedRow], Vector, dict[tuple[str, str], int]]:
    """The unlabelled misses as rows whose groups follow the labelled ones, scored by the router."""
    keys = dict(groups.keys)
    prompts: list[str] = []
    every = list(rows)
    for index, strong_cost, weak_cost in unlabelled:
        record = records[index]
        prompt = last_user_prompt(record)
        group = keys.setdefault((record.task, prompt), len(labelled) + len(prompts))
        if group == len(labelled) + len(prompts):
            prompts.append(prompt)
        every.append(RoutedRow(index, group, strong_cost, weak_cost))
    extra = np.asarray(scorer.score(prompts), dtype=np.float64) if prompts else np.empty(0)
    return every, np.concatenate((labelled, extra)), keys


def group_rows(
    records: Sequence[Record], labelled: Sequence[tuple[int, Decimal, Decimal, float]]
) -> tuple[list[RoutedRow], _Groups]:
    """`labelled`: (record position, strong cost, weak cost, weak grade) of each labelled miss."""
    by_prompt: dict[tuple[str, str], int] = {}
    prompts: list[str] = []
    tasks: list[str] = []
    weights: list[float] = []
    strong: list[float] = []
    weak: list[float] = []
    rows: list[RoutedRow] = []
    for index, strong_cost, weak_cost, weak_grade in labelled:
        record = records[index]
        prompt = last_user_prompt(record)
        group = by_prompt.setdefault((record.task, prompt), len(prompts))
        if group == len(prompts):
            prompts.append(prompt)
            tasks.append(record.task)
            weights.append(0.0)
            strong.append(float(record.quality or 0.0))
            weak.append(weak_grade)
        weights[group] += 1.0
        rows.append(RoutedRow(index, group, strong_cost, weak_cost))
    arrays = _Groups(prompts, tasks, np.array(weights), np.array(strong), np.array(weak), by_prompt)
    return rows, arrays


def _out_of_fold_scores(groups: _Groups, max_train: int) -> tuple[Vector, TaskHeadScorer]:
    """Out-of-fold scores of a seeded sample of at most `max_train` prompts; the rest are scored by
    the router fitted on that sample (which never saw them)."""
    n = len(groups.prompts)
    sample = np.sort(np.random.default_rng(SEED).permutation(n)[:max_train])
    outcomes = outcomes_from_records(
        [
            {
                "prompt": groups.prompts[i],
                "benchmark": groups.tasks[i],
                "weak_score": groups.weak[i],
                "strong_score": groups.strong[i],
            }
            for i in sample
        ],
        source="whatif",
    )
    result = train_scorer(outcomes, _TRAINING)
    scores = np.empty(n, dtype=np.float64)
    rest = np.setdiff1d(np.arange(n), sample)
    if rest.size:
        scores[rest] = result.scorer.score([groups.prompts[i] for i in rest])
    scores[sample] = result.out_of_fold_scores
    return scores, result.scorer


def _tie_boundaries(sorted_scores: Vector) -> NDArray[np.intp]:
    """Counts k of top-scored groups that a threshold can select (never splitting a tie)."""
    n = sorted_scores.size
    cut = np.flatnonzero(np.diff(sorted_scores) != 0) + 1
    return np.concatenate(([0], cut, [n])).astype(np.intp)


class _Bootstrap:
    """Quality ratio resamples for "the top k groups go strong", on one shared set of resamples.

    The resamples are margin.evals.stats's (seeded, prompts drawn with replacement), drawn once as
    counts per prompt: a weighted mean of a resample is then one dot product, so every threshold
    is judged on the same resamples at the cost of a matrix-vector product.
    """

    def __init__(self, groups: _Groups, order: NDArray[np.intp], config: RoutingConfig) -> None:
        self.groups, self.order, self.config = groups, order, config
        n = groups.weight.size
        rng = np.random.default_rng(SEED)
        self.counts = np.empty((config.resamples, n), dtype=np.float32)
        for r in range(config.resamples):
            self.counts[r] = np.bincount(rng.integers(0, n, size=n), minlength=n)
        self.totals = self.counts @ groups.weight.astype(np.float32)
        self.strong_means = self._means(groups.strong)
        self._cache: dict[int, Vector] = {}

    def _means(self, values: Vector) -> Vector:
        sums = self.counts @ (values * self.groups.weight).astype(np.float32)
        return np.asarray(sums, dtype=np.float64) / np.asarray(self.totals, dtype=np.float64)

    def ratios(self, k: int) -> Vector:
        if k not in self._cache:
            routed = self.groups.weak.copy()
            top = self.order[:k]
            routed[top] = self.groups.strong[top]
            self._cache[k] = self._means(routed) / np.where(self.strong_means > 0, self.strong_means, 1.0)
        return self._cache[k]

    def lower(self, k: int) -> float:
        return float(np.quantile(self.ratios(k), 1 - self.config.confidence))


def _first_feasible(boundaries: NDArray[np.intp], lows: _Bootstrap, target: float) -> int:
    """Binary search for the fewest strong groups whose lower bound reaches the target (all-strong
    always does: its ratio is 1 in every resample)."""
    lo, hi = 0, len(boundaries) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if lows.lower(int(boundaries[mid])) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _point(
    k: int,
    scores: Vector,
    order: NDArray[np.intp],
    population: tuple[Sequence[RoutedRow], Vector],
    groups: _Groups,
    lows: _Bootstrap,
) -> CurvePoint:
    """Quality on the graded groups (`scores`); cost and share on every row (`population`)."""
    threshold = float(scores[order[k - 1]]) if k > 0 else float("inf")
    rows, every_score = population
    to_strong = every_score >= threshold
    cost = sum((r.strong_cost if to_strong[r.group] else r.weak_cost for r in rows), Decimal(0))
    weak_requests = sum(1 for r in rows if not to_strong[r.group])
    strong = scores >= threshold
    quality = np.where(strong, groups.strong, groups.weak)
    strong_total = float(groups.weight @ groups.strong)
    ratios = lows.ratios(k)
    tail = (1 - lows.config.confidence) / 2
    return CurvePoint(
        weak_share=weak_requests / len(rows),
        threshold=threshold,
        cost=cost,
        quality_ratio=float(groups.weight @ quality) / strong_total if strong_total > 0 else 1.0,
        low=lows.lower(k),
        high=float(np.quantile(ratios, 1 - tail)),
    )
