"""The embedded default's local embedding model: `margin serve` with no config, the `embed` extra's
all-MiniLM-L6-v2 answering the official openai SDK over loopback, metered into the ledger."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from margin.embedding import minilm_available
from tests.support.ledger_rows import stored_row
from tests.support.processes import embedded_default

pytestmark = pytest.mark.skipif(not minilm_available(), reason="needs the `embed` extra")
BREAD = ("How do I bake bread at home?", "What is a good recipe for homemade bread?")
MARKETS = "The stock market fell sharply on Tuesday."


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp: Path = tmp_path_factory.mktemp("embedded-embeddings")
    with embedded_default(tmp) as url:
        yield url, tmp / "margin.db"


@pytest.fixture
def client(embedded: tuple[str, Path]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{embedded[0]}/v1", api_key="none", max_retries=0, timeout=60)


def test_listed_in_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"minilm", "all-minilm-l6-v2", "smollm2"} <= ids
    assert client.models.retrieve("minilm").id == "minilm"


def test_vectors_are_384_unit_length_and_keep_meaning(client: openai.OpenAI) -> None:
    answer = client.embeddings.create(model="minilm", input=[*BREAD, MARKETS], encoding_format="float")
    assert answer.model == "all-MiniLM-L6-v2"
    assert [d.index for d in answer.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in answer.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > 0.6 and unrelated < 0.3, (similar, unrelated)
    assert answer.usage.prompt_tokens == answer.usage.total_tokens > 3 * 2


def test_base64_decodes_to_the_float_answer(embedded: tuple[str, Path], client: openai.OpenAI) -> None:
    texts = [BREAD[0], "a second, different sentence"]
    as_float = client.embeddings.create(model="all-minilm-l6-v2", input=texts, encoding_format="float")
    # The SDK asks for base64 when no format is given and decodes it itself.
    sdk_default = client.embeddings.create(model="all-minilm-l6-v2", input=texts)
    raw = httpx.post(
        f"{embedded[0]}/v1/embeddings",
        json={"model": "minilm", "input": texts, "encoding_format": "base64"},
        timeout=60,
    )
    assert raw.status_code == 200
    decoded = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4").tolist() for d in raw.json()["data"]]
    for plain, via_sdk, by_hand in zip(as_float.data, sdk_default.data, decoded, strict=True):
        assert len(plain.embedding) == 384
        assert via_sdk.embedding == plain.embedding == by_hand
    assert sdk_default.usage.prompt_tokens == as_float.usage.prompt_tokens > 0


def test_dimensions_follow_openais_rules(client: openai.OpenAI) -> None:
    same = client.embeddings.create(model="minilm", input="hello", dimensions=384, encoding_format="float")
    assert len(same.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="minilm", input="hello", dimensions=128)
    assert refused.value.status_code == 400
    assert refused.value.body["param"] == "dimensions"  # type: ignore[index]


def test_a_token_array_and_chat_are_clear_400s(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as tokens:
        client.embeddings.create(model="minilm", input=[[101, 7592, 102]])
    assert tokens.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model="minilm", messages=[{"role": "user", "content": "hi"}])
    assert "/v1/embeddings" in str(chat.value)


def test_metered_into_the_ledger(embedded: tuple[str, Path], client: openai.OpenAI) -> None:
    raw = client.embeddings.with_raw_response.create(model="minilm", input=list(BREAD), encoding_format="float")
    answer = raw.parse()
    assert raw.headers["x-margin-deployment"] == "local-minilm"
    row = stored_row(embedded[1], raw.headers["x-request-id"])
    assert row["endpoint"] == "embeddings" and row["status"] == "ok"
    assert row["deployment"] == "local-minilm" and row["model_group"] == "minilm"
    assert row["input_uncached"] == answer.usage.prompt_tokens and row["output"] == 0
    assert row["usage_source"] == "reported"
    assert not row["price_unknown"] and row["price_version"].startswith("config:local-minilm")
    assert Decimal(row["cost_total"]) == 0
