"""The word score: a ridge regression over [words and word pairs | embedding], stacked into the heads.

Words carry what a mean-pooled embedding blurs: the subject of an MMLU question, the kind of word
problem. On its own a bag-of-words ridge already ranks MMLU as well as the embedding head; stacked
(its out-of-fold score as one more column of the logistic heads) it adds about 0.015 APGR there.

Its target is denoised: y' = blend * y + (1 - blend) * (the smoothed mean label of the row's
category). One prompt's outcome is a coin flip around its difficulty, while a category's mean
(an MMLU subject, an MT-Bench category) is measured on hundreds of prompts; pulling each label
halfway to it teaches the words which subjects the cheap tier struggles with. Rows without a
category count as one category per benchmark, which leaves their labels' ranking as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from margin.routing.learned.sparse import RidgeModel, SparseRows, fit_ridge
from margin.routing.learned.words import Vocabulary

Matrix = NDArray[np.float64]
Vector = NDArray[np.float64]


@dataclass(frozen=True)
class WordScorer:
    vocabulary: Vocabulary
    ridge: RidgeModel

    def score(self, prompts: Sequence[str], embedding: Matrix) -> Vector:
        return self.score_rows(self.vocabulary.transform(prompts), embedding)

    def score_rows(self, words: SparseRows, embedding: Matrix) -> Vector:
        result: Vector = np.asarray(self.ridge.predict(words, embedding), dtype=np.float64)
        return result

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {
            # UTF-8 bytes of the terms joined by newlines (terms never hold one): a numpy string
            # array would store 4 bytes a character, padded to the longest term (16 MB, not 1).
            "vocabulary": np.frombuffer("\n".join(self.vocabulary.words).encode("utf-8"), dtype=np.uint8),
            "idf": self.vocabulary.idf,
            "ngrams": np.array(self.vocabulary.ngrams),
            "word_weights": np.asarray(self.ridge.word_weights),
            "word_dense_weights": np.asarray(self.ridge.dense_weights),
            "word_bias": np.array(self.ridge.bias),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> WordScorer:
        text = arrays["vocabulary"].tobytes().decode("utf-8")
        vocabulary = Vocabulary(
            words=tuple(text.split("\n")) if text else (),
            idf=arrays["idf"],
            ngrams=int(arrays["ngrams"]) if "ngrams" in arrays else 1,
        )
        ridge = RidgeModel(
            word_weights=arrays["word_weights"],
            dense_weights=arrays["word_dense_weights"],
            bias=float(arrays["word_bias"]),
        )
        if ridge.word_weights.shape != (vocabulary.size,):
            raise ValueError("word weights do not match the vocabulary")
        return cls(vocabulary, ridge)


def category_targets(labels: Vector, categories: Sequence[str], *, blend: float, smoothing: float) -> Vector:
    """blend * label + (1 - blend) * the category's mean label, shrunk to the overall mean by
    `smoothing` pseudo-rows (a category of 5 rows says little about its difficulty)."""
    names = np.asarray(categories, dtype=object)
    overall = float(labels.mean())
    means = np.empty_like(labels)
    for name in set(names.tolist()):
        rows = names == name
        means[rows] = (labels[rows].sum() + smoothing * overall) / (np.count_nonzero(rows) + smoothing)
    result: Vector = blend * labels + (1.0 - blend) * means
    return result


@dataclass(frozen=True)
class WordFit:
    scorer: WordScorer
    out_of_fold: Vector  # each row scored by a ridge fitted without its fold
    alpha: float


def fit_word_scorer(
    prompts: Sequence[str],
    embedding: Matrix,
    targets: Vector,
    folds: NDArray[np.int64],
    alphas: Sequence[float],
    *,
    ngrams: int = 1,
) -> WordFit:
    """Pick alpha by out-of-fold squared error; the scorer is the mean of that alpha's fold ridges.

    The mean of the fold ridges (one ridge: the mean of their weights), not a refit on every row:
    the heads learn from out-of-fold word scores, and the fold ridges' scores of new prompts spread
    like those, while a refit on all rows spreads wider (the same alpha over more rows). On held-out
    RouteLLM folds the refit moved the realised strong share up to 4.6 points below a configured 80%;
    the mean of the fold ridges keeps every configured share from 10% to 90% within about 2 points.

    The vocabulary is built once from all training prompts: it depends on no label, and a word seen
    only in the held-out fold gets no weight from the other folds anyway.
    """
    if not alphas:
        raise ValueError("word alphas must not be empty")
    vocabulary = Vocabulary.fit(prompts, ngrams=ngrams)
    words = vocabulary.transform(prompts)
    best: tuple[float, float, Vector, RidgeModel] | None = None
    for alpha in alphas:
        oof, model = _cross_fit(words, embedding, targets, folds, alpha)
        error = float(np.mean((oof - targets) ** 2))
        if best is None or error < best[0]:
            best = (error, alpha, oof, model)
    assert best is not None  # alphas is not empty
    _, alpha, oof, model = best
    return WordFit(scorer=WordScorer(vocabulary, model), out_of_fold=oof, alpha=alpha)


def _cross_fit(
    words: SparseRows, embedding: Matrix, targets: Vector, folds: NDArray[np.int64], alpha: float
) -> tuple[Vector, RidgeModel]:
    """Out-of-fold scores and the mean of the fold ridges (a single fold: one in-sample ridge)."""
    fold_names = np.unique(folds)
    if fold_names.size < 2:  # nothing to hold out: score in-sample
        model = fit_ridge(words, embedding, targets, alpha)
        return np.asarray(model.predict(words, embedding), dtype=np.float64), model
    scores = np.zeros(targets.size)
    models = []
    for fold in fold_names:
        test = np.flatnonzero(folds == fold)
        train = np.flatnonzero(folds != fold)
        models.append(fit_ridge(words.take(train), embedding[train], targets[train], alpha))
        scores[test] = models[-1].predict(words.take(test), embedding[test])
    mean = RidgeModel(
        word_weights=np.mean([m.word_weights for m in models], axis=0),
        dense_weights=np.mean([m.dense_weights for m in models], axis=0),
        bias=float(np.mean([m.bias for m in models])),
    )
    return scores, mean
