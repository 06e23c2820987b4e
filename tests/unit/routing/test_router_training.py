"""Scorer fitting on synthetic data, save/load round trips and the request-path facade."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from margin.embedding import HashingEmbedder, minilm_available
from margin.routing.learned.features import FeatureSpec, Featurizer
from margin.routing.learned.logistic import fit_logistic
from margin.routing.learned.outcomes import Outcomes, outcomes_from_records
from margin.routing.learned.router import load_router
from margin.routing.learned.scorer import ModelFileError, Scorer, load_scorer
from margin.routing.learned.training import TrainingConfig, gain_labels, train_scorer

HASHING = FeatureSpec(embedder="hashing", hashing_dim=128)


def synthetic_outcomes(n: int = 240, seed: int = 0) -> Outcomes:
    """Hard prompts (long arithmetic) defeat the weak tier only; easy ones both tiers answer."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        hard = i % 2 == 0
        if hard:
            numbers = " ".join(str(x) for x in rng.integers(100, 999, 6))
            prompt = f"Compute the integral and the product of {numbers}, then solve for x = sqrt(y) / {i}."
        else:
            prompt = f"What colour is the sky on a clear day? Say it in one word, friend number {i}."
        records.append({"prompt": prompt, "weak_score": 0.0 if hard else 1.0, "strong_score": 1.0, "fold": i % 4 + 1})
    return outcomes_from_records(records)


def test_logistic_fit_separates_separable_data() -> None:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 2))
    labels = (features[:, 0] - 0.5 * features[:, 1] > 0).astype(float)
    model = fit_logistic(features, labels, l2=0.1)
    predicted = model.predict_proba(features) > 0.5
    assert np.mean(predicted == labels.astype(bool)) == 1.0
    assert model.weights[0] > 0 > model.weights[1]


def test_logistic_fit_honours_soft_labels() -> None:
    features = np.zeros((100, 1))
    model = fit_logistic(features, np.full(100, 0.25), l2=1.0)
    assert model.predict_proba(features)[0] == pytest.approx(0.25, abs=1e-6)


def test_gain_labels() -> None:
    labels, scales = gain_labels(np.array([0.0, 1.0, 1.0, 0.0]), np.array([1.0, 1.0, 0.0, 0.0]))
    assert labels.tolist() == [1.0, 0.5, 0.0, 0.5]
    assert scales == {"all": 1.0}
    graded, graded_scales = gain_labels(np.array([8.0, 9.0]), np.array([10.0, 8.0]))
    assert graded_scales == {"all": 2.0}
    assert graded.tolist() == [1.0, 0.25]


def test_gain_labels_are_scaled_per_benchmark() -> None:
    """A graded benchmark (gaps up to 8) beside a 0/1 one must not squash the 0/1 labels."""
    weak = np.array([0.0, 1.0, 1.0, 2.0, 9.0])
    strong = np.array([1.0, 0.0, 1.0, 10.0, 5.0])
    labels, scales = gain_labels(weak, strong, ["mmlu", "mmlu", "mmlu", "mtbench", "mtbench"])
    assert scales == {"mmlu": 1.0, "mtbench": 8.0}
    assert labels.tolist() == [1.0, 0.0, 0.5, 1.0, 0.25]
    tied, tied_scales = gain_labels(np.array([3.0, 3.0]), np.array([3.0, 3.0]), ["flat", "flat"])
    assert tied.tolist() == [0.5, 0.5] and tied_scales == {"flat": 1.0}
    with pytest.raises(ValueError, match="one benchmark per row"):
        gain_labels(weak, strong, ["mmlu"])


def test_training_on_a_mixed_file_keeps_the_0_1_signal() -> None:
    """Adding a few graded rows with big gaps must not flatten the scores of the 0/1 rows."""
    binary = synthetic_outcomes()
    graded = [
        {"prompt": f"Write a poem about the sea, take {i}.", "weak_score": 2.0, "strong_score": 10.0, "fold": i % 4 + 1}
        for i in range(8)
    ]
    records = [
        {"prompt": p, "weak_score": w, "strong_score": s, "fold": int(f), "benchmark": "toy"}
        for p, w, s, f in zip(binary.prompts, binary.weak_score, binary.strong_score, binary.fold, strict=True)
    ]
    mixed = outcomes_from_records(records + [{**row, "benchmark": "graded"} for row in graded])
    result = train_scorer(mixed, TrainingConfig(features=HASHING, l2_grid=(10.0,)))
    assert result.scorer.metadata["gain_scale"] == {"graded": 8.0, "toy": 1.0}
    scores = result.scorer.score(binary.prompts)
    hard = binary.weak_score == 0.0
    # With one global scale (8) the 0/1 labels sat in 0.5 +- 0.0625 and the scores in a sliver.
    assert scores[hard].mean() - scores[~hard].mean() > 0.4  # labels 1 vs 1/2 (one scale: 0.5625 vs 1/2)


def test_scorer_learns_a_separable_task() -> None:
    outcomes = synthetic_outcomes()
    result = train_scorer(outcomes, TrainingConfig(features=HASHING, l2_grid=(1.0, 10.0)))
    assert result.out_of_fold_apgr == pytest.approx(0.75)  # the oracle: half the prompts gain
    scores = result.scorer.score(outcomes.prompts)
    hard = outcomes.weak_score == 0.0
    assert scores[hard].min() > scores[~hard].max()
    assert isinstance(result.scorer, Scorer)


def test_save_load_round_trip(tmp_path: Path) -> None:
    outcomes = synthetic_outcomes()
    scorer = train_scorer(outcomes, TrainingConfig(features=HASHING, l2_grid=(10.0,))).scorer
    path = tmp_path / "router.model"
    scorer.save(path)
    loaded = load_scorer(path)
    assert path.exists()  # no ".npz" appended
    assert np.array_equal(loaded.score(outcomes.prompts[:20]), scorer.score(outcomes.prompts[:20]))
    assert loaded.metadata["l2"] == 10.0
    assert loaded.featurizer.spec == HASHING


def test_load_checks_a_shared_embedder(tmp_path: Path) -> None:
    path = tmp_path / "router.npz"
    train_scorer(synthetic_outcomes(), TrainingConfig(features=HASHING, l2_grid=(10.0,))).scorer.save(path)
    assert load_scorer(path, embedder=HashingEmbedder(dim=128)).featurizer.embedding_dim == 128
    with pytest.raises(ModelFileError, match="trained on"):
        load_scorer(path, embedder=HashingEmbedder(dim=64))


def test_bad_model_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError):
        load_scorer(junk)
    other = tmp_path / "other.npz"
    with other.open("wb") as handle:
        np.savez(handle, weights=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a margin router model"):
        load_scorer(other)


def test_load_router_picks_thresholds_from_the_stored_calibration(tmp_path: Path) -> None:
    outcomes = synthetic_outcomes()
    path = tmp_path / "router.npz"
    train_scorer(outcomes, TrainingConfig(features=HASHING, l2_grid=(10.0,))).scorer.save(path)
    by_quality = load_router(path, quality=0.95)
    choices = by_quality.route_many(list(outcomes.prompts))
    hard = outcomes.weak_score == 0.0
    assert all(c.tier == "strong" for c, h in zip(choices, hard, strict=True) if h)
    assert sum(c.tier == "strong" for c in choices) <= 0.6 * len(choices)
    strong_calls = [
        sum(c.tier == "strong" for c in load_router(path, strong_shares=[share]).route_many(outcomes.prompts))
        for share in (0.0, 0.25, 0.5, 1.0)
    ]
    assert strong_calls[0] == 0 and strong_calls[-1] == 240
    assert strong_calls == sorted(strong_calls)
    assert by_quality.route(outcomes.prompts[0]).explain().startswith("learned;tier=")
    with pytest.raises(ValueError):
        load_router(path, quality=0.9, strong_shares=[0.5])


def test_lexical_only_features_need_no_embedder() -> None:
    outcomes = synthetic_outcomes(80)
    spec = FeatureSpec(embedder="none")
    result = train_scorer(outcomes, TrainingConfig(features=spec, l2_grid=(1.0,)))
    assert result.scorer.featurizer.dim == Featurizer(spec).lexical_dim
    assert result.out_of_fold_apgr == pytest.approx(0.75)


@pytest.mark.skipif(not minilm_available(), reason="needs the `embed` extra (tokenizers)")
def test_static_table_travels_in_the_model_file(tmp_path: Path) -> None:
    from margin.embedding import StaticMiniLMEmbedder

    table = np.random.default_rng(0).normal(size=(30522, 8)).astype(np.float16)
    spec = FeatureSpec(embedder="static")
    featurizer = Featurizer(spec, StaticMiniLMEmbedder(table))
    outcomes = synthetic_outcomes(80)
    scorer = train_scorer(outcomes, TrainingConfig(features=spec, l2_grid=(1.0,)), featurizer=featurizer).scorer
    scorer.save(tmp_path / "static.npz")
    loaded = load_scorer(tmp_path / "static.npz")
    assert np.allclose(loaded.score(outcomes.prompts[:5]), scorer.score(outcomes.prompts[:5]))
