"""Scorer fitting on synthetic data, save/load round trips and the request-path facade."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from margin.embedding import HashingEmbedder, minilm_available
from margin.routing.learned.curve import apgr, routing_curve
from margin.routing.learned.features import FeatureSpec, Featurizer
from margin.routing.learned.gate import TaskGate
from margin.routing.learned.logistic import fit_logistic
from margin.routing.learned.outcomes import Outcomes, outcomes_from_records
from margin.routing.learned.router import load_router
from margin.routing.learned.scorer import LinearScorer, ModelFileError, Scorer, load_scorer
from margin.routing.learned.task_heads import TaskHeadScorer
from margin.routing.learned.training import TrainingConfig, fit_head, gain_labels, train_scorer

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
    assert loaded.metadata["l2"] == {"*": 10.0}  # one benchmark: one (shared) head
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


def opposite_tasks(n: int = 480, seed: int = 7) -> Outcomes:
    """Two tasks of the same form where length means opposite things: long "proof" prompts defeat
    the cheap tier, while in "chat" the short ones (terse riddles) do."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        task = "proof" if i % 2 else "chat"
        long = bool(rng.random() < 0.5)
        filler = " ".join(["and then some more words"] * int(rng.integers(8, 12) if long else 1))
        hard = long if task == "proof" else not long
        weak = float(rng.random() < (0.2 if hard else 0.9))
        prompt = f"{'Prove' if task == 'proof' else 'Chat'}: {filler}"
        records.append({"prompt": prompt, "weak_score": weak, "strong_score": 1.0, "benchmark": task})
    return outcomes_from_records([r | {"fold": i // 2 % 4 + 1} for i, r in enumerate(records)])


def held_out_apgr(outcomes: Outcomes, config: TrainingConfig) -> dict[str, float]:
    train, test = outcomes.select(folds=[1, 2, 3]), outcomes.select(folds=[4])
    scores = train_scorer(train, config).scorer.score(test.prompts)
    result = {}
    for task in ("proof", "chat"):
        rows = np.array([b == task for b in test.benchmarks])
        result[task] = apgr(routing_curve(scores[rows], test.weak_score[rows], test.strong_score[rows]))
    return result


def test_a_head_per_task_ranks_tasks_whose_signals_disagree() -> None:
    outcomes = opposite_tasks()
    # Lexical features only and no word score: what is left to tell the tasks apart is the heads.
    config = TrainingConfig(features=FeatureSpec(embedder="none"), l2_grid=(1.0, 10.0), word_penalty=1e9)
    per_task = held_out_apgr(outcomes, replace(config, min_task_rows=50))
    assert min(per_task.values()) > 0.65  # each task ranked by its own rule (random: 0.5)
    result = train_scorer(outcomes, replace(config, min_task_rows=50))
    scorer = result.scorer
    assert len(scorer.heads) == 2 and set(result.l2) == {"chat", "proof"}
    assert scorer.gate is not None and scorer.gate.tasks == ("chat", "proof")
    long_filler = " ".join(["and then some more words"] * 10)
    chat = scorer.score(["Chat: and then some more words", f"Chat: {long_filler}"])
    proof = scorer.score(["Prove: and then some more words", f"Prove: {long_filler}"])
    assert chat[0] > chat[1] + 0.1 and proof[1] > proof[0] + 0.1  # length means opposite things
    one_head = train_scorer(outcomes, replace(config, min_task_rows=10**6)).scorer
    assert len(one_head.heads) == 1 and one_head.gate is None


def test_small_tasks_share_a_head_and_everything_round_trips(tmp_path: Path) -> None:
    outcomes = opposite_tasks()
    tiny = outcomes_from_records(
        [
            {"prompt": f"Write a haiku about rain {i}", "weak_score": 6.0, "strong_score": 9.0, "fold": i % 4 + 1}
            | {"benchmark": "haiku"}
            for i in range(12)
        ]
    )
    mixed = outcomes_from_records(
        [
            {"prompt": p, "weak_score": w, "strong_score": s, "fold": int(f), "benchmark": b}
            for o in (outcomes, tiny)
            for p, w, s, f, b in zip(o.prompts, o.weak_score, o.strong_score, o.fold, o.benchmarks, strict=True)
        ]
    )
    result = train_scorer(mixed, TrainingConfig(features=HASHING, l2_grid=(3.0,), min_task_rows=50))
    scorer = result.scorer
    assert len(scorer.heads) == 3 and set(result.l2) == {"*", "chat", "proof"}
    assert scorer.gate is not None and scorer.gate.tasks == ("chat", "haiku", "proof")
    assert scorer.head_of_task[scorer.gate.tasks.index("haiku")] == 0  # the shared head
    assert scorer.metadata["gain_scale"] == {"chat": 1.0, "haiku": 3.0, "proof": 1.0}
    path = tmp_path / "heads.npz"
    scorer.save(path)
    loaded = load_scorer(path)
    assert isinstance(loaded, TaskHeadScorer)
    assert np.array_equal(loaded.score(mixed.prompts), scorer.score(mixed.prompts))
    assert loaded.name == scorer.name == "task-heads[hashing+lexical+words; 3 heads]"
    gated = loaded.gate.predict(loaded.featurizer.transform(mixed.prompts)) if loaded.gate else None
    assert gated is not None and np.mean(np.array(loaded.gate.tasks)[gated] == np.array(mixed.benchmarks)) > 0.95


def test_a_linear_model_file_from_before_task_heads_still_loads(tmp_path: Path) -> None:
    outcomes = synthetic_outcomes(80)
    featurizer = Featurizer(HASHING)
    labels, _ = gain_labels(outcomes.weak_score, outcomes.strong_score)
    linear = LinearScorer(featurizer, fit_head(featurizer.transform(outcomes.prompts), labels, 1.0), {"l2": 1.0})
    path = tmp_path / "linear.npz"
    linear.save(path)
    loaded = load_scorer(path)
    assert isinstance(loaded, LinearScorer) and loaded.name == "linear[hashing+lexical]"
    assert np.array_equal(loaded.score(outcomes.prompts[:10]), linear.score(outcomes.prompts[:10]))


def test_features_read_at_most_max_chars_of_a_prompt(tmp_path: Path) -> None:
    """A long prompt costs no more than its last max_chars: a prefix of any length changes nothing."""
    spec = FeatureSpec(embedder="hashing", hashing_dim=128, max_chars=300)
    assert spec.clip("x" * 500 + "tail") == ("x" * 500 + "tail")[-300:]
    assert FeatureSpec(embedder="none", keep="head", max_chars=3).clip("abcdef") == "abc"
    outcomes = synthetic_outcomes(80)
    scorer = train_scorer(outcomes, TrainingConfig(features=spec, l2_grid=(1.0,))).scorer
    question = outcomes.prompts[0]
    padded = "Some pasted context. " * 5000 + " " + question  # 105,000 characters
    assert np.array_equal(scorer.score([padded]), scorer.score([spec.clip(padded)]))
    assert scorer.score([padded])[0] != scorer.score([question])[0]  # the kept tail differs from the question
    scorer.save(tmp_path / "clip.npz")
    assert load_scorer(tmp_path / "clip.npz").featurizer.spec.max_chars == 300


def test_specs_saved_before_max_chars_read_every_character() -> None:
    legacy = {key: value for key, value in HASHING.to_json().items() if key != "max_chars"}
    assert FeatureSpec.from_json(legacy).max_chars is None
    assert FeatureSpec.from_json(HASHING.to_json()) == HASHING
    with pytest.raises(ValueError, match="max_chars"):
        FeatureSpec(embedder="none", max_chars=0)


def test_the_gate_finds_a_small_task_beside_a_large_one() -> None:
    rng = np.random.default_rng(11)
    large = rng.normal(size=(600, 6))
    small = rng.normal(size=(12, 6)) + np.array([2.5, 0, 0, 0, 0, 0])  # apart along one feature only
    gate = TaskGate.fit(np.vstack([large, small]), ["big"] * 600 + ["tiny"] * 12)
    fresh_small = rng.normal(size=(200, 6)) + np.array([2.5, 0, 0, 0, 0, 0])
    fresh_large = rng.normal(size=(200, 6))
    assert np.mean(gate.predict(fresh_small) == gate.tasks.index("tiny")) > 0.8
    assert np.mean(gate.predict(fresh_large) == gate.tasks.index("big")) > 0.8
