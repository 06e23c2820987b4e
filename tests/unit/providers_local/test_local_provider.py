"""The local llama.cpp adapter: bounded queue, clean 503, tokens counted by the model's tokenizer."""

from __future__ import annotations

import asyncio

import pytest
from tests.conftest import HAS_LOCAL_MODEL

from margin import errors
from margin.config.model import DeploymentConfig
from margin.providers.local import LocalProvider
from margin.types import ChatRequest

pytestmark = [pytest.mark.local_model, pytest.mark.skipif(not HAS_LOCAL_MODEL, reason="needs the 'local' extra")]


def provider(max_queue: int) -> LocalProvider:
    deployment = DeploymentConfig.model_validate(
        {
            "name": "local",
            "provider": "local",
            "model": "SmolLM2-135M-Instruct",
            "local": {"max_concurrency": 1, "max_queue": max_queue, "n_ctx": 512},
        }
    )
    return LocalProvider(deployment)


def chat(tokens: int = 4) -> ChatRequest:
    return ChatRequest(
        model="local", messages=[{"role": "user", "content": "Hi"}], params={"max_tokens": tokens, "temperature": 0}
    )


async def test_full_queue_is_a_503_with_retry_after() -> None:
    local = provider(max_queue=0)
    await local.start()
    try:
        await local.chat(chat(1))  # weights loaded: from here on the queue bound applies
        results = await asyncio.gather(local.chat(chat(16)), local.chat(chat(16)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, errors.CapacityExceeded)]
        assert len(refused) == 1
        assert refused[0].status == 503 and refused[0].headers["retry-after"] == "1"
        assert refused[0].failover  # the router may spill to another tier
        answered = [r for r in results if not isinstance(r, BaseException)]
        assert answered and answered[0].usage is not None
    finally:
        await local.aclose()


async def test_stream_reports_usage_from_the_tokenizer() -> None:
    local = provider(max_queue=4)
    await local.start()
    try:
        chunks = [c async for c in local.stream(chat(5))]
        usage = chunks[-1].usage
        assert usage is not None and usage.source == "reported"
        assert 0 < usage.output <= 5 and usage.input_uncached > 3
        assert local.count_tokens("hello world") >= 2
    finally:
        await local.aclose()


async def test_embeddings_are_refused_clearly() -> None:
    local = provider(max_queue=1)
    with pytest.raises(errors.InvalidRequest, match="does not serve embeddings"):
        from margin.types import EmbeddingRequest

        await local.embed(EmbeddingRequest(model="local", inputs=["x"]))
