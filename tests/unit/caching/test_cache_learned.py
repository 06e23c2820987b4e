"""The learned decision: features, the model file, fitting, and the engine deciding with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from test_cache_support import HAS_MINILM, Upstream, backend_for, context, minilm, request, serve, stage_for

from margin.caching.group_settings import policy_for
from margin.caching.semantic.batcher import MicroBatcher
from margin.caching.semantic.engine import SemanticEngine, SemanticPolicy
from margin.caching.semantic.guard import features
from margin.caching.semantic.learned import (
    FEATURES,
    LearnedDecision,
    PairContext,
    fit_decision,
    load_decision,
    pair_features,
)
from margin.cli.cache import cache
from margin.config.model import CacheConfig, SemanticCacheConfig
from margin.embedding import HashingEmbedder


def cosine_only(weight: float, bias: float) -> LearnedDecision:
    """A model that looks at the cosine alone: probability = sigmoid(weight * cosine + bias)."""
    weights = np.zeros(len(FEATURES))
    weights[FEATURES.index("cosine")] = weight
    return LearnedDecision(weights, bias, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), floor=0.1)


def test_pair_features_describe_the_pair() -> None:
    a, b = features("What year did Elvis die?"), features("When did Elvis die?")
    row = dict(zip(FEATURES, pair_features(a, b, 0.9, PairContext(rank=1, best_similarity=0.95)), strict=True))
    assert row["cosine"] == 0.9 and row["rank"] == 1 and row["behind_best"] == pytest.approx(0.05)
    assert row["cosine_closeness"] == pytest.approx(-np.log(0.1))
    assert row["token_jaccard"] == pytest.approx(3 / 6)  # did, elvis, die of what, year, did, elvis, die, when
    assert row["same_opener"] == 0.0 and row["same_wh"] == 0.0 and row["unshared_content"] == 1.0  # year
    assert row["query_only_content"] == 1.0 and row["cached_only_content"] == 0.0  # the query adds "year"
    assert row["and_differs"] == 0.0 and row["wh_count_gap"] == 0.0
    both = dict(
        zip(FEATURES, pair_features(features("When and where was X born?"), b, 0.9, PairContext()), strict=True)
    )
    assert both["and_differs"] == 1.0 and both["wh_count_gap"] == 1.0
    same = pair_features(a, a, 1.0, PairContext())
    assert same[FEATURES.index("char3_jaccard")] == 1.0 and same[FEATURES.index("length_ratio")] == 1.0


def test_the_shipped_model_is_fitted_on_the_train_split_and_round_trips() -> None:
    model = load_decision()
    assert "train split" in model.trained_on and model.features == FEATURES and 0 < model.floor < 1
    rows = np.random.default_rng(0).uniform(0, 1, (20, len(FEATURES)))
    again = LearnedDecision.from_json(model.to_json())
    np.testing.assert_allclose(again.probabilities(rows), model.probabilities(rows), atol=1e-5)
    assert model.probability(rows[0]) == pytest.approx(float(model.probabilities(rows[:1])[0]))
    hamlet = features("who wrote hamlet?")
    paraphrase = pair_features(hamlet, features("who is the author of hamlet?"), 0.93, PairContext())
    far = pair_features(hamlet, features("who painted the mona lisa?"), 0.81, PairContext())
    assert model.probability(paraphrase) > model.probability(far)


def test_a_file_with_other_features_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_bytes(load_decision().to_json().replace(b'"rank"', b'"position"'))
    with pytest.raises(ValueError, match="features"):
        load_decision(path)


def test_fit_reaches_the_optimum_of_the_penalised_log_loss() -> None:
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(400, len(FEATURES)))
    truth = 1 / (1 + np.exp(-(2 * rows[:, 0] - rows[:, 3])))
    labels = list(rng.uniform(size=400) < truth)
    model = fit_decision(rows, labels, l2=1.0)
    standard = (rows - model.mean) / model.scale
    p = model.probabilities(rows)
    gradient = standard.T @ (p - np.asarray(labels, dtype=float)) + 1.0 * model.weights
    assert np.abs(gradient).max() < 1e-2 and abs(float(np.sum(p - np.asarray(labels, dtype=float)))) < 1e-2
    assert model.weights[0] > 0.5 and model.weights[3] < -0.2  # the signs of the true model
    with pytest.raises(ValueError, match="both labels"):
        fit_decision(rows, [True] * 400)


async def test_the_engine_accepts_by_probability_after_the_guard(tmp_path: Path) -> None:
    embedder = HashingEmbedder(dim=64)
    engine = SemanticEngine(backend_for("memory", tmp_path), MicroBatcher(embedder, window_s=0))
    cached, paraphrase = "how do i reset my router", "how do i reset the router"
    negated = "how do i not reset my router"
    vectors = embedder.embed([cached, paraphrase, negated])
    await engine.add("p", "key", cached, vectors[0])
    similarity = float(vectors[0] @ vectors[1])
    model = cosine_only(weight=50.0, bias=-50.0 * similarity)  # probability 0.5 at this pair's cosine
    lenient = SemanticPolicy(threshold=0.999, learned=model, min_probability=0.45)
    match = await engine.find("p", paraphrase, vectors[1], lenient)
    assert match is not None and match.key == "key" and match.similarity == pytest.approx(similarity)
    strict = SemanticPolicy(threshold=0.1, learned=model, min_probability=0.55)
    assert await engine.find("p", paraphrase, vectors[1], strict) is None  # the cosine threshold plays no part
    always = SemanticPolicy(threshold=0.999, learned=cosine_only(0.0, 20.0), min_probability=0.5)
    assert await engine.find("p", negated, vectors[2], always) is None and engine.rejected_by_guard == 1
    await engine.close()


def test_the_route_policy_carries_the_model(tmp_path: Path) -> None:
    config = CacheConfig(semantic=SemanticCacheConfig(enabled=True, decision="learned", min_probability=0.9))
    policy = policy_for(config, "chat").semantic
    assert policy is not None and policy.learned is not None and policy.learned.trained_on == load_decision().trained_on
    assert policy.min_probability == 0.9
    plain = policy_for(CacheConfig(semantic=SemanticCacheConfig(enabled=True)), "chat").semantic
    assert plain is not None and plain.learned is None
    path = tmp_path / "mine.json"
    path.write_bytes(cosine_only(1.0, 0.0).to_json())
    mine = policy_for(
        CacheConfig(semantic=SemanticCacheConfig(enabled=True, decision="learned", learned_model=path)), "chat"
    ).semantic
    assert mine is not None and mine.learned is not None and mine.learned.floor == 0.1
    with pytest.raises(ValidationError, match="learned_model"):
        SemanticCacheConfig(decision="learned", learned_model=tmp_path / "missing.json")


@pytest.mark.skipif(not HAS_MINILM, reason="needs the embed extra")
async def test_a_route_with_the_learned_decision_serves_a_paraphrase_not_a_negation(tmp_path: Path) -> None:
    upstream = Upstream()
    stage = stage_for(
        backend_for("memory", tmp_path),
        embedder=minilm(),
        semantic={"enabled": True, "decision": "learned", "min_probability": 0.5},
    )
    await serve(stage, context(), request("How do I reset my router password?"), upstream)
    served = await serve(stage, context(), request("How can I reset my router password?"), upstream)
    assert served.kind == "semantic" and served.text == "How do I reset my router password?"
    negated = await serve(stage, context(), request("How can I not reset my router password?"), upstream)
    assert negated.kind != "semantic" and upstream.calls == 2
    await stage.close()


def test_calibrate_fits_the_learned_decision_where_cosine_cannot_separate(tmp_path: Path) -> None:
    """Hashing vectors score a swapped noun (a different question: 0.85-0.86) above a reworded
    opener (the same question: 0.84-0.85): no cosine threshold separates them, the lexical features do."""
    rows = []
    for i in range(60):
        printer = f"how do i reset the password of the office printer {i}"
        rows.append({"a": printer, "b": "please, " + printer.replace("how do i", "how can i"), "same": 1})
        rows.append({"a": printer, "b": printer.replace("printer", "router"), "same": 0})
    path, out = tmp_path / "pairs.jsonl", tmp_path / "learned.json"
    path.write_text("\n".join(orjson.dumps(r).decode() for r in rows))
    runner = CliRunner()
    plain = runner.invoke(cache, ["calibrate", str(path), "--embedder", "hashing", "--target-precision", "0.9"])
    assert plain.exit_code == 1 and "refused" in plain.output
    args = ["calibrate", str(path), "--embedder", "hashing", "--target-precision", "0.9", "--fit-learned", str(out)]
    fitted = runner.invoke(cache, args)
    assert fitted.exit_code == 0, fitted.output
    assert "fitted on 120 guard-passing pairs" in fitted.output and "decision: learned" in fitted.output
    model = load_decision(out)
    assert "120 labelled pairs of pairs.jsonl" in model.trained_on
    shadow = runner.invoke(cache, ["calibrate", "--from-shadow", "--fit-learned", str(out)])
    assert shadow.exit_code == 2 and "needs PAIRS.jsonl" in shadow.output
