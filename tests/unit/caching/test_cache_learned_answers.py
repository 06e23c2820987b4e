"""The learned decision's lead over the best rival whose cached ANSWER differs (ahead_of_other_answer):
the feature with agreeing, disagreeing and unknown answers, the engine feeding it the fingerprints of
the answers it stored, and model files of the 16-feature format still loading."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest
from test_cache_support import Upstream, backend_for, context, one_feature_decision, request, serve, stage_for

from margin.caching.semantic.batcher import MicroBatcher
from margin.caching.semantic.engine import SemanticEngine, SemanticPolicy, answer_fingerprint
from margin.caching.semantic.guard import features
from margin.caching.semantic.learned import FEATURES, LearnedDecision, PairContext, load_decision, pair_features
from margin.embedding import HashingEmbedder

RIVAL, OTHER = FEATURES.index("ahead_of_rival"), FEATURES.index("ahead_of_other_answer")


def leads(similarity: float, context: PairContext) -> tuple[float, float]:
    row = pair_features(
        features("how do i reset my router"), features("how can i reset my router"), similarity, context
    )
    return float(row[RIVAL]), float(row[OTHER])


def test_a_rival_holding_the_same_answer_does_not_count() -> None:
    similarities = [0.99, 0.98, 0.9]
    # the runner-up holds the best one's answer: the rival is the third (0.9), not the runner-up
    rival, other = leads(0.99, PairContext.among(similarities, 0, ["a", "a", "b"]))
    assert rival == pytest.approx(math.log(2)) and other == pytest.approx(math.log(10))
    # a different answer: the runner-up is the rival, as ahead_of_rival says
    assert leads(0.99, PairContext.among(similarities, 0, ["a", "b", "c"])) == pytest.approx((math.log(2),) * 2)
    # every other candidate agrees: no rival, the lead is the candidate's own closeness
    assert leads(0.99, PairContext.among(similarities, 0, ["a", "a", "a"]))[1] == pytest.approx(-math.log(0.01))
    # a lower candidate agreeing with the best one is measured against the best other answer
    assert leads(0.98, PairContext.among(similarities, 1, ["a", "a", "b"]))[1] == pytest.approx(math.log(10 / 2))
    assert leads(0.98, PairContext.among(similarities, 1, ["b", "a", "b"]))[1] == pytest.approx(-math.log(2))


def test_unknown_answers_count_as_different() -> None:
    similarities = [0.99, 0.98, 0.9]
    for answers in (None, [None, None, None], [None, "a", "a"], ["a", None, "b"]):
        rival, other = leads(0.99, PairContext.among(similarities, 0, answers))
        assert other == pytest.approx(rival) == pytest.approx(math.log(2)), answers
    # a bare context (a labelled pair alone) is the same as before: no rival at all
    assert leads(0.9, PairContext()) == pytest.approx((-math.log(0.1),) * 2)


def test_answer_fingerprints_compare_normalised_text() -> None:
    assert answer_fingerprint("Paris.") == answer_fingerprint("  paris ")
    assert answer_fingerprint("Paris") != answer_fingerprint("Rome")
    assert answer_fingerprint("") is None and answer_fingerprint(" \n") is None  # tool calls only: like no other


async def test_the_engine_serves_past_a_paraphrase_holding_the_same_answer(tmp_path: Path) -> None:
    embedder = HashingEmbedder(dim=64)
    query, cached, paraphrase = (
        "how do i reset the password of my router",
        "how do i reset the password on my router",  # hashing cosine 0.833
        "how do i reset the password of my printer",  # 0.838, stands in for a close paraphrase
    )
    vectors = embedder.embed([query, cached, paraphrase])
    policy = SemanticPolicy(
        threshold=0.999, learned=one_feature_decision("ahead_of_other_answer"), min_probability=0.5, guard=False
    )
    for answers, served in ((("Hold reset.", "Hold reset"), True), (("Hold reset.", "Call us."), False)):
        engine = SemanticEngine(backend_for("memory", tmp_path / str(served)), MicroBatcher(embedder, window_s=0))
        await engine.add("p", "one", cached, vectors[1], answer=answers[0])
        await engine.add("p", "two", paraphrase, vectors[2], answer=answers[1])
        found = await engine.find("p", query, vectors[0], policy)
        assert (found is not None) is served, answers
        if served:
            engine.forget(["one"])  # a forgotten entry's answer goes with it
            engine.forget(["two"])
            await engine.add("p", "two", paraphrase, vectors[2])  # stored without its answer: unknown
            await engine.add("p", "one", cached, vectors[1], answer="Hold reset")
            assert await engine.find("p", query, vectors[0], policy) is None
        await engine.close()


async def test_the_gateway_stores_the_answers_fingerprint_with_the_entry(tmp_path: Path) -> None:
    stage = stage_for(backend_for("memory", tmp_path), embedder=HashingEmbedder(dim=64))
    upstream = Upstream()  # answers with the question's text
    missed = await serve(stage, context(), request("How do I reset my router password?"), upstream)
    await stage.flush()
    assert missed.kind == "miss" and stage.semantic is not None
    stored = [print_ for part in stage.semantic._partitions.values() for print_ in part.answers.values()]
    assert stored == [answer_fingerprint(missed.text)]
    await stage.close()


def test_a_file_of_the_16_features_still_loads_and_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    names = FEATURES[: RIVAL + 1]
    weights, mean, scale = rng.normal(size=16), rng.normal(size=16), rng.uniform(0.5, 2, size=16)
    body = orjson.loads(LearnedDecision(weights, -0.2, mean, scale, features=names).to_json())
    body["format"] = 3  # as files written before ahead_of_other_answer
    path = tmp_path / "v3.json"
    path.write_bytes(orjson.dumps(body))
    loaded = load_decision(path)
    assert loaded.features == names
    rows = rng.uniform(0, 1, (4, len(FEATURES)))
    expected = 1 / (1 + np.exp(-(((rows[:, :16] - mean) / scale) @ weights - 0.2)))
    np.testing.assert_allclose(loaded.probabilities(rows), expected, atol=1e-5)


def test_the_shipped_model_reads_answer_agreement() -> None:
    model = load_decision()
    assert model.features == FEATURES
    hamlet, author = features("who wrote hamlet?"), features("who is the author of hamlet?")
    similarities = [0.93, 0.925]
    agreeing = pair_features(hamlet, author, 0.93, PairContext.among(similarities, 0, ["shakespeare"] * 2))
    differing = pair_features(hamlet, author, 0.93, PairContext.among(similarities, 0, ["shakespeare", "marlowe"]))
    assert model.probability(agreeing) > model.probability(differing)
