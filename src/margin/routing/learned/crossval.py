"""Held-out evaluation protocols: cross-fold within a benchmark and train-on-one, test-on-another.

Features are computed once by the caller and sliced here, so embedding cost is paid once however
many folds and settings are run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from margin.routing.learned.evaluation import Evaluation, evaluate_scores
from margin.routing.learned.features import Featurizer
from margin.routing.learned.outcomes import Outcomes, TierPrices
from margin.routing.learned.training import TrainingConfig, train_scorer

Matrix = NDArray[np.float64]


@dataclass(frozen=True)
class HeldOutResult:
    """Evaluations of one protocol: one per test fold (cross-fold) or a single one."""

    setting: str
    train_rows: int
    evaluations: tuple[Evaluation, ...]

    @property
    def test_rows(self) -> int:
        return sum(e.rows for e in self.evaluations)

    def mean(self, metric: str) -> float:
        """Mean over test folds of a CurveSummary field (e.g. "apgr", "cpt80")."""
        return float(np.mean([getattr(e.router_summary, metric) for e in self.evaluations]))

    def std(self, metric: str) -> float:
        return float(np.std([getattr(e.router_summary, metric) for e in self.evaluations]))

    def random_mean(self, metric: str) -> float:
        """The same mean for the random router on the same test folds."""
        return float(np.mean([getattr(e.random_summary, metric) for e in self.evaluations]))


def cross_fold(
    outcomes: Outcomes,
    features: Matrix,
    featurizer: Featurizer,
    *,
    config: TrainingConfig | None = None,
    prices: TierPrices | None = None,
    setting: str = "cross-fold",
) -> HeldOutResult:
    """For each fold k: train on the other folds (hyper-parameters picked on inner folds of those),
    test on fold k."""
    evaluations = []
    train_rows = 0
    for fold in np.unique(outcomes.fold):
        test = outcomes.fold == fold
        result = train_scorer(outcomes.take(~test), config, featurizer=featurizer, features=features[~test])
        test_prompts = [outcomes.prompts[i] for i in np.flatnonzero(test)]
        scores = result.scorer.score_features(features[test], test_prompts)
        evaluations.append(evaluate_scores(scores, outcomes.take(test), prices))
        train_rows = max(train_rows, int(np.count_nonzero(~test)))
    return HeldOutResult(setting=setting, train_rows=train_rows, evaluations=tuple(evaluations))


def train_test(
    train: tuple[Outcomes, Matrix],
    test: tuple[Outcomes, Matrix],
    featurizer: Featurizer,
    *,
    config: TrainingConfig | None = None,
    prices: TierPrices | None = None,
    setting: str = "train/test",
) -> HeldOutResult:
    """Train on one set (e.g. a benchmark), evaluate on another."""
    (train_outcomes, train_features), (test_outcomes, test_features) = train, test
    result = train_scorer(train_outcomes, config, featurizer=featurizer, features=train_features)
    scores = result.scorer.score_features(test_features, test_outcomes.prompts)
    evaluation = evaluate_scores(scores, test_outcomes, prices)
    return HeldOutResult(setting=setting, train_rows=len(train_outcomes), evaluations=(evaluation,))


def rows_of(outcomes: Outcomes, benchmarks: Sequence[str]) -> NDArray[np.bool_]:
    """Boolean mask of the rows from the given benchmarks."""
    wanted = set(benchmarks)
    return np.array([name in wanted for name in outcomes.benchmarks], dtype=np.bool_)
