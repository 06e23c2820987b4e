"""Bag of words, numpy sparse rows and ridge, the stacked word score and the bag-of-words baseline."""

from __future__ import annotations

import numpy as np
import pytest

from margin.routing.learned.baselines import fit_bag_of_words_ridge
from margin.routing.learned.curve import apgr, routing_curve
from margin.routing.learned.outcomes import outcomes_from_records
from margin.routing.learned.sparse import SparseRows, fit_ridge
from margin.routing.learned.stacking import category_targets, fit_word_scorer
from margin.routing.learned.words import Vocabulary, words_of


def dense_of(rows: SparseRows) -> np.ndarray:
    matrix = np.zeros((rows.rows, rows.columns))
    for i in range(rows.rows):
        span = slice(rows.indptr[i], rows.indptr[i + 1])
        matrix[i, rows.indices[span]] = rows.data[span]
    return matrix


def random_sparse(seed: int, rows: int = 40, columns: int = 25) -> SparseRows:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(rows, columns)) * (rng.random((rows, columns)) < 0.2)
    matrix[3] = 0.0  # an empty row
    indptr = np.concatenate([[0], np.cumsum(np.count_nonzero(matrix, axis=1))]).astype(np.int64)
    row_index, column_index = np.nonzero(matrix)
    return SparseRows(matrix[row_index, column_index], column_index.astype(np.int64), indptr, columns)


def test_sparse_products_and_take_match_dense_numpy() -> None:
    sparse = random_sparse(0)
    dense = dense_of(sparse)
    rng = np.random.default_rng(1)
    vector, matrix = rng.normal(size=25), rng.normal(size=(25, 3))
    assert np.allclose(sparse.dot(vector), dense @ vector)
    assert np.allclose(sparse.dot(matrix), dense @ matrix)
    values, many = rng.normal(size=40), rng.normal(size=(40, 2))
    assert np.allclose(sparse.transpose_dot(values), dense.T @ values)
    assert np.allclose(sparse.transpose_dot(many), dense.T @ many)
    picked = np.array([5, 3, 0, 5])
    assert np.array_equal(dense_of(sparse.take(picked)), dense[picked])


def test_ridge_matches_the_closed_form() -> None:
    sparse = random_sparse(2)
    rng = np.random.default_rng(3)
    extra = rng.normal(size=(40, 2))
    target = rng.normal(size=40) + 5.0
    model = fit_ridge(sparse, extra, target, alpha=0.7, tol=1e-10)
    design = np.hstack([dense_of(sparse), extra, np.full((40, 1), 30.0)])
    penalty = 0.7 * np.eye(design.shape[1])
    solution = np.linalg.solve(design.T @ design + penalty, design.T @ target)
    assert np.allclose(model.predict(sparse, extra), design @ solution, atol=1e-6)
    both = fit_ridge(sparse, extra, np.column_stack([target, -target]), alpha=0.7, tol=1e-10)
    assert np.allclose(both.predict(sparse, extra)[:, 1], -(design @ solution), atol=1e-6)


def test_vocabulary_keeps_shared_words_and_normalises_rows() -> None:
    assert words_of("What's 2+2? Paris!") == ["what", "s", "2", "2", "paris"]
    vocabulary = Vocabulary.fit(["the cat sat", "the dog sat", "a bird"], min_prompts=2)
    assert vocabulary.words == ("sat", "the")
    rows = vocabulary.transform(["The the SAT", "unknown words only"])
    matrix = dense_of(rows)
    assert np.isclose(np.linalg.norm(matrix[0]), 1.0) and matrix[0, 1] > matrix[0, 0]  # "the" twice
    assert not matrix[1].any()


def test_category_targets_pull_labels_to_their_category_mean() -> None:
    labels = np.array([1.0, 1.0, 1.0, 0.0, 0.5, 0.5])
    categories = ["hard", "hard", "hard", "easy", "easy", "easy"]
    pulled = category_targets(labels, categories, blend=0.5, smoothing=0.0)
    assert pulled.tolist() == [1.0, 1.0, 1.0, 0.0 / 2 + 1 / 3 / 2, 0.25 + 1 / 6, 0.25 + 1 / 6]
    shrunk = category_targets(labels, categories, blend=0.0, smoothing=6.0)
    overall = labels.mean()
    assert shrunk[0] == pytest.approx((3.0 + 6 * overall) / 9) and shrunk[3] == pytest.approx((1.0 + 6 * overall) / 9)


def subject_outcomes(n: int = 400) -> list[dict[str, object]]:
    """Two subjects in the words of the prompt; only one of them defeats the cheap tier."""
    rng = np.random.default_rng(5)
    rows = []
    for i in range(n):
        physics = i % 2 == 0
        topic = "quantum entanglement decoherence" if physics else "poetry sonnet rhyme"
        filler = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "omega"], size=4))
        weak = float(rng.random() < (0.3 if physics else 0.9))
        rows.append(
            {
                "prompt": f"Question {i} on {topic} {filler}",
                "weak_score": weak,
                "strong_score": 1.0,
                "fold": i // 2 % 4 + 1,
            }
            | {"category": "physics" if physics else "poetry"}
        )
    return rows


def test_word_score_learns_which_subject_is_hard_out_of_fold() -> None:
    outcomes = outcomes_from_records(subject_outcomes())
    labels = 0.5 + 0.5 * (outcomes.strong_score - outcomes.weak_score)
    fit = fit_word_scorer(outcomes.prompts, np.zeros((len(outcomes), 0)), labels, outcomes.fold, (1.0, 10.0))
    physics = np.array([c == "physics" for c in outcomes.categories])
    assert fit.out_of_fold[physics].mean() > fit.out_of_fold[~physics].mean() + 0.2
    assert fit.alpha in (1.0, 10.0)
    new = fit.scorer.score(["Question on quantum decoherence", "Question on a sonnet"], np.zeros((2, 0)))
    assert new[0] > new[1]


def test_bag_of_words_baseline_ranks_the_hard_subject_first() -> None:
    outcomes = outcomes_from_records(subject_outcomes())
    train, test = outcomes.select(folds=[1, 2, 3]), outcomes.select(folds=[4])
    baseline = fit_bag_of_words_ridge(train)
    curve = routing_curve(baseline.score(test.prompts), test.weak_score, test.strong_score)
    assert apgr(curve) > 0.63  # random is 0.5; physics first, as a perfect ranker would: 0.69
    assert baseline.name.startswith("bow-ridge[alpha=")


def test_word_pairs_are_terms_of_their_own_and_survive_a_model_file() -> None:
    vocabulary = Vocabulary.fit(["more than ten", "less than ten", "more than five"], min_prompts=2, ngrams=2)
    assert vocabulary.words == ("more", "more than", "ten", "than", "than ten")
    matrix = dense_of(vocabulary.transform(["ten more than"]))
    assert np.count_nonzero(matrix) == 4  # ten, more, than, "more than" ("ten more" is not a term)
    from margin.routing.learned.stacking import WordScorer

    scorer = WordScorer(
        vocabulary, fit_ridge(vocabulary.transform(["more than ten"]), np.zeros((1, 0)), np.ones(1), 1.0)
    )
    arrays = scorer.arrays()
    assert arrays["vocabulary"].dtype == np.uint8  # UTF-8 bytes, not 4 bytes a character
    again = WordScorer.from_arrays(arrays)
    assert again.vocabulary.ngrams == 2 and again.vocabulary.words == vocabulary.words
    prompts = ["more than ten", "less"]
    assert np.array_equal(again.score(prompts, np.zeros((2, 0))), scorer.score(prompts, np.zeros((2, 0))))
