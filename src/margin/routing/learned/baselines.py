"""A bag-of-words ridge regression: the simple baseline a learned router has to beat.

Same labels as the router (per-benchmark gain labels, training.gain_labels), tf-idf words
(words.py), no embedding, no task heads; alpha picked by out-of-fold squared error on the training
rows. bench/router.py trains it on the same rows as the router in every fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from margin.routing.learned.outcomes import Outcomes
from margin.routing.learned.stacking import WordScorer, fit_word_scorer
from margin.routing.learned.training import gain_labels

Vector = NDArray[np.float64]
DEFAULT_ALPHAS: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)


@dataclass(frozen=True)
class BagOfWordsRidge:
    words: WordScorer
    alpha: float

    @property
    def name(self) -> str:
        return f"bow-ridge[alpha={self.alpha:g}]"

    def score(self, prompts: Sequence[str]) -> Vector:
        """The predicted gain label (higher: route to the strong tier); not clipped to [0, 1]."""
        return self.words.score(prompts, np.zeros((len(prompts), 0)))


def fit_bag_of_words_ridge(outcomes: Outcomes, alphas: Sequence[float] = DEFAULT_ALPHAS) -> BagOfWordsRidge:
    labels, _ = gain_labels(outcomes.weak_score, outcomes.strong_score, outcomes.benchmarks)
    no_dense = np.zeros((len(outcomes), 0))
    fit = fit_word_scorer(outcomes.prompts, no_dense, labels, outcomes.fold, alphas)
    return BagOfWordsRidge(words=fit.scorer, alpha=fit.alpha)
