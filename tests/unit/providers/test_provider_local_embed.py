"""The local MiniLM embedding adapter: OpenAI's request rules, exact encodings, tokenizer usage,
work off the event loop behind a bounded queue (the model tests need the `embed` extra)."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from margin import errors
from margin.config.defaults import embedded_default
from margin.config.model import DeploymentConfig
from margin.embedding import minilm_available
from margin.metering.catalog import load_builtin_catalog
from margin.metering.pricebook import PriceBook
from margin.metering.unknown import UnknownPricePolicy
from margin.providers.local_embed import LocalEmbedProvider, embedding_body, embedding_options, text_inputs
from margin.types import ChatRequest, EmbeddingRequest, Usage

needs_extra = pytest.mark.skipif(not minilm_available(), reason="needs the `embed` extra")
SIMILAR = ("How do I bake bread at home?", "What is a good recipe for homemade bread?")
UNRELATED = "The stock market fell sharply on Tuesday."


def deployment(**settings: object) -> DeploymentConfig:
    spec: dict[str, object] = {"name": "local-minilm", "provider": "local_embed", "model": "all-MiniLM-L6-v2"}
    spec.update(settings)
    return DeploymentConfig.model_validate(spec)


def request(inputs: list[str], **params: object) -> EmbeddingRequest:
    return EmbeddingRequest(model="minilm", inputs=inputs, params=dict(params))


# --- request rules and the response shape (no model needed) ----------------------------------------


def test_encoding_format_defaults_to_float_and_accepts_base64() -> None:
    assert embedding_options({}, 384, "m") == "float"
    assert embedding_options({"encoding_format": None}, 384, "m") == "float"
    assert embedding_options({"encoding_format": "base64"}, 384, "m") == "base64"
    with pytest.raises(errors.InvalidRequest) as refused:
        embedding_options({"encoding_format": "int8"}, 384, "m")
    assert refused.value.status == 400 and refused.value.param == "encoding_format"


@pytest.mark.parametrize("dimensions", [1, 128, 383, 385, 1536, True])
def test_dimensions_other_than_the_models_own_are_refused(dimensions: object) -> None:
    with pytest.raises(errors.InvalidRequest) as refused:
        embedding_options({"dimensions": dimensions}, 384, "all-MiniLM-L6-v2")
    assert refused.value.status == 400 and refused.value.param == "dimensions"
    assert "384" in refused.value.message


def test_the_models_own_dimensions_are_accepted() -> None:
    assert embedding_options({"dimensions": 384, "encoding_format": "float"}, 384, "m") == "float"


def test_token_arrays_are_refused_text_passes() -> None:
    assert text_inputs(["a", ""], "m") == ["a", ""]
    with pytest.raises(errors.InvalidRequest) as refused:
        text_inputs([[101, 7592, 102]], "m")
    assert refused.value.status == 400 and refused.value.param == "input"


def test_base64_is_little_endian_float32_of_the_same_floats() -> None:
    vectors = np.random.default_rng(7).standard_normal((3, 384)).astype(np.float32)
    as_float = embedding_body(vectors, "float", "m", 12)
    as_b64 = embedding_body(vectors, "base64", "m", 12)
    assert as_float["usage"] == {"prompt_tokens": 12, "total_tokens": 12}
    assert [d["index"] for d in as_b64["data"]] == [0, 1, 2]
    for plain, packed, row in zip(as_float["data"], as_b64["data"], vectors, strict=True):
        decoded = np.frombuffer(base64.b64decode(packed["embedding"]), dtype="<f4")
        assert decoded.tolist() == plain["embedding"] == row.tolist()


def test_the_embedded_default_lists_it_only_with_the_extra_and_prices_it() -> None:
    without = embedded_default({}, embeddings=False)
    assert "minilm" not in {m.name for m in without.models}
    assert all(d.provider != "local_embed" for d in without.deployments)
    served = embedded_default({}, embeddings=True)
    group = next(m for m in served.models if m.name == "minilm")
    assert group.deployments == ["local-minilm"] and "all-minilm-l6-v2" in group.aliases
    book = PriceBook(served.deployments, load_builtin_catalog(), UnknownPricePolicy.ALERT)
    assert book.known("local-minilm")  # declared, never an unknown price
    cost = book.cost("local-minilm", Usage(input_uncached=1000))
    assert cost.basis != "unknown" and cost.price_version.startswith("config:local-minilm")
    assert cost.input_uncached == cost.output == 0


def test_a_context_window_beyond_the_models_positions_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError):
        LocalEmbedProvider(deployment(context_window=1024))


# --- the model itself ------------------------------------------------------------------------------


@pytest.fixture
async def embedder() -> AsyncIterator[LocalEmbedProvider]:
    provider = LocalEmbedProvider(deployment())
    await provider.start()
    yield provider
    await provider.aclose()


@needs_extra
async def test_unit_vectors_that_keep_meaning_and_tokenizer_usage(embedder: LocalEmbedProvider) -> None:
    result = await embedder.embed(request([*SIMILAR, UNRELATED]))
    vectors = np.array([d["embedding"] for d in result.body["data"]])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3
    tokens = sum(embedder.count_tokens(t) for t in (*SIMILAR, UNRELATED))
    assert result.usage == Usage(input_uncached=tokens, source="reported")
    assert result.body["usage"]["prompt_tokens"] == tokens > 3 * 2  # [CLS] and [SEP] each, and words
    assert result.body["model"] == result.model == "all-MiniLM-L6-v2"


@needs_extra
async def test_base64_decodes_to_the_float_answer(embedder: LocalEmbedProvider) -> None:
    plain = await embedder.embed(request(list(SIMILAR)))
    packed = await embedder.embed(request(list(SIMILAR), encoding_format="base64", dimensions=384))
    for a, b in zip(plain.body["data"], packed.body["data"], strict=True):
        assert np.frombuffer(base64.b64decode(b["embedding"]), dtype=np.float32).tolist() == a["embedding"]


@needs_extra
async def test_an_over_long_input_is_refused_not_truncated(embedder: LocalEmbedProvider) -> None:
    await embedder.embed(request(["warm up"]))
    with pytest.raises(errors.ContextLengthExceeded) as refused:
        await embedder.embed(request(["short", "word " * 300]))
    assert refused.value.status == 400 and refused.value.error_code == "context_length_exceeded"
    assert "input[1]" in refused.value.message


@needs_extra
async def test_the_event_loop_keeps_answering_while_it_embeds(embedder: LocalEmbedProvider) -> None:
    await embedder.embed(request(["warm up"]))
    began = time.perf_counter()
    work = asyncio.create_task(embedder.embed(request([f"sentence number {i} about bread" for i in range(256)])))
    gaps = []
    while not work.done():
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        gaps.append(time.perf_counter() - started)
    assert len((await work).body["data"]) == 256
    took = time.perf_counter() - began
    # A blocked loop would show one gap as long as the whole batch; relative, so a busy machine
    # (which slows the batch and the loop alike) does not make it flaky.
    assert len(gaps) > 5 and max(gaps) < took / 4, (max(gaps), took)


@needs_extra
async def test_a_full_queue_is_a_503_and_a_cancelled_request_keeps_its_thread_until_done() -> None:
    provider = LocalEmbedProvider(deployment(local_embed={"max_concurrency": 1, "max_queue": 0}))
    await provider.start()
    try:
        await provider.embed(request(["warm up"]))  # loaded: from here on the queue bound applies
        big = request([f"a fairly long sentence about bread, number {i}" for i in range(512)])
        running = asyncio.create_task(provider.embed(big))
        await asyncio.sleep(0.05)
        with pytest.raises(errors.CapacityExceeded) as refused:
            await provider.embed(request(["one more"]))
        assert refused.value.status == 503 and refused.value.headers["retry-after"] == "1"
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        with pytest.raises(errors.CapacityExceeded):  # its thread is still busy: not free to take
            await provider.embed(request(["one more"]))
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = await provider.embed(request(["after it finished"]))
                break
            except errors.CapacityExceeded:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
        assert len(answer.body["data"]) == 1
    finally:
        await provider.aclose()


@needs_extra
async def test_chat_on_an_embedding_model_is_a_clear_400(embedder: LocalEmbedProvider) -> None:
    chat = ChatRequest(model="minilm", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(errors.InvalidRequest) as refused:
        await embedder.chat(chat)
    assert refused.value.status == 400 and "/v1/embeddings" in refused.value.message
    with pytest.raises(errors.InvalidRequest):
        await anext(aiter(embedder.stream(chat)))


@needs_extra
async def test_a_missing_model_file_is_unhealthy_and_fails_over(tmp_path: object) -> None:
    provider = LocalEmbedProvider(deployment(local_embed={"model_path": "/nonexistent/model.onnx"}))
    await provider.start()
    try:
        with pytest.raises(errors.UpstreamModelGone) as gone:
            await provider.embed(request(["hello"]))
        assert gone.value.failover and "did not load" in gone.value.message
        assert await provider.health() is False
    finally:
        await provider.aclose()
