"""The learned decision's lead over the best other candidate (ahead_of_rival): the feature, the engine
feeding it the runner-up, model files of the 15-feature format still loading, and pair-only fits
(`margin cache calibrate --fit-learned`) leaving it out."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner
from test_cache_support import backend_for, one_feature_decision

from margin.caching.semantic.batcher import MicroBatcher
from margin.caching.semantic.engine import SemanticEngine, SemanticPolicy
from margin.caching.semantic.guard import features
from margin.caching.semantic.learned import (
    FEATURES,
    PAIR_FEATURES,
    LearnedDecision,
    PairContext,
    load_decision,
    pair_features,
)
from margin.cli.cache import cache
from margin.embedding import HashingEmbedder

LEAD = FEATURES.index("ahead_of_rival")


def lead(similarity: float, context: PairContext) -> float:
    a, b = features("how do i reset my router"), features("how can i reset my router")
    return float(pair_features(a, b, similarity, context)[LEAD])


def test_the_lead_is_the_closeness_over_the_best_other_candidate() -> None:
    assert FEATURES[:15] == PAIR_FEATURES and FEATURES[15] == "ahead_of_rival"
    # the best candidate (0.99) against the runner-up (0.9): -log(0.01) + log(0.1)
    assert lead(0.99, PairContext(0, None, runner_up=0.9)) == pytest.approx(math.log(10))
    # a lower candidate against the best one: the same gap, negative
    assert lead(0.9, PairContext(1, 0.99, runner_up=0.9)) == pytest.approx(-math.log(10))
    # no other candidate: its rival scores 0, so the lead is the candidate's own closeness
    assert lead(0.9, PairContext()) == pytest.approx(-math.log(0.1))


async def test_the_engine_refuses_a_candidate_with_a_close_rival(tmp_path: Path) -> None:
    embedder = HashingEmbedder(dim=64)
    engine = SemanticEngine(backend_for("memory", tmp_path), MicroBatcher(embedder, window_s=0))
    query, cached, rival = (
        "how do i reset the password of my router",
        "how do i reset the password on my router",  # hashing cosine 0.833
        "how do i reset the password of my printer",  # 0.838: a rival just ahead
    )
    vectors = embedder.embed([query, cached, rival])
    await engine.add("p", "router", cached, vectors[1])
    policy = SemanticPolicy(threshold=0.999, learned=one_feature_decision("ahead_of_rival"), min_probability=0.5)
    alone = await engine.find("p", query, vectors[0], policy)
    assert alone is not None and alone.key == "router"  # no other candidate: far ahead
    await engine.add("p", "printer", rival, vectors[2])
    assert await engine.find("p", query, vectors[0], policy) is None
    # one candidate served at most, but the runner-up is still looked at
    one = SemanticPolicy(
        threshold=0.999, learned=one_feature_decision("ahead_of_rival"), min_probability=0.5, max_candidates=1
    )
    assert await engine.find("p", query, vectors[0], one) is None
    await engine.close()


def test_a_file_of_the_15_pair_features_still_loads_and_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    weights, mean, scale = rng.normal(size=15), rng.normal(size=15), rng.uniform(0.5, 2, size=15)
    model = LearnedDecision(weights, 0.3, mean, scale, features=PAIR_FEATURES)
    body = orjson.loads(model.to_json())
    body["format"] = 2  # as files written before ahead_of_rival
    path = tmp_path / "old.json"
    path.write_bytes(orjson.dumps(body))
    loaded = load_decision(path)
    assert loaded.features == PAIR_FEATURES
    rows = rng.uniform(0, 1, (5, len(FEATURES)))  # full-width rows, as pair_features gives
    expected = 1 / (1 + np.exp(-(((rows[:, :15] - mean) / scale) @ weights + 0.3)))
    np.testing.assert_allclose(loaded.probabilities(rows), expected, atol=1e-5)
    assert loaded.probability(rows[0]) == pytest.approx(float(expected[0]), abs=1e-5)
    body["weights"] = body["weights"][:-1]
    path.write_bytes(orjson.dumps(body))
    with pytest.raises(ValueError, match="one weight per feature"):
        load_decision(path)


def test_the_shipped_model_reads_the_lead_and_prefers_a_clear_winner() -> None:
    model = load_decision()
    assert model.features == FEATURES and "ahead_of_rival" in model.features
    hamlet, author = features("who wrote hamlet?"), features("who is the author of hamlet?")
    clear = pair_features(hamlet, author, 0.93, PairContext(0, None, runner_up=0.6))
    contested = pair_features(hamlet, author, 0.93, PairContext(0, None, runner_up=0.925))
    assert model.probability(clear) > model.probability(contested)


def test_calibrate_fit_learned_fits_the_pair_features_only(tmp_path: Path) -> None:
    """A labelled pair has no other candidates: the fitted file leaves ahead_of_rival out."""
    rows = []
    for i in range(40):
        printer = f"how do i reset the password of the office printer {i}"
        rows.append({"a": printer, "b": "please, " + printer.replace("how do i", "how can i"), "same": 1})
        rows.append({"a": printer, "b": printer.replace("printer", "router"), "same": 0})
    pairs, out = tmp_path / "pairs.jsonl", tmp_path / "learned.json"
    pairs.write_text("\n".join(orjson.dumps(r).decode() for r in rows))
    args = ["calibrate", str(pairs), "--embedder", "hashing", "--target-precision", "0.9", "--fit-learned", str(out)]
    result = CliRunner().invoke(cache, args)
    assert result.exit_code == 0, result.output
    model = load_decision(out)
    assert model.features == PAIR_FEATURES and len(model.weights) == len(PAIR_FEATURES)
    a, b = features(str(rows[0]["a"])), features(str(rows[0]["b"]))
    row = pair_features(a, b, 0.85, PairContext(0, None, runner_up=0.84))
    assert model.probability(row) == pytest.approx(model.probability(pair_features(a, b, 0.85, PairContext())))
