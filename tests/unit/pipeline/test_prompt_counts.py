"""A request's prompt is counted once, ahead and off the event loop, by the deployments whose
tokenizer is slow (the local models), and every stage reads that count (issue 16, 2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from margin.metering.catalog import load_builtin_catalog
from margin.metering.pricebook import PriceBook
from margin.metering.unknown import UnknownPricePolicy
from margin.pipeline.context import RequestContext
from margin.pipeline.meter import Meter, count_prompt_now, estimate_text_tokens
from margin.types import ChatRequest, EmbeddingRequest


class Tokenizer:
    """A slow deployment's counter: counts words, and remembers how often it ran, and how."""

    def __init__(self) -> None:
        self.calls = 0
        self.ahead = 0

    def count_tokens(self, text: str) -> int:
        self.calls += 1
        return len(text.split())

    async def count_tokens_ahead(self, texts: Sequence[str]) -> int:
        self.ahead += 1
        return sum(len(t.split()) for t in texts)


def meter(**providers: Any) -> Meter:
    return Meter(providers, PriceBook([], load_builtin_catalog(), UnknownPricePolicy.ALERT))


def chat(*texts: str) -> ChatRequest:
    return ChatRequest(model="m", messages=[{"role": "user", "content": t} for t in texts])


def test_a_long_or_many_part_prompt_is_never_tokenized_on_the_loop() -> None:
    tokenizer = Tokenizer()
    short = chat("a b c", "d e")
    assert count_prompt_now(short, tokenizer.count_tokens) == 5 + 3 * 2 + 3 and tokenizer.calls == 2
    many = chat(*["word"] * 2048)
    long = chat("lorem ipsum " * 5000)
    for request in (many, long):
        texts = [m["content"] for m in request.messages]
        expected = sum(estimate_text_tokens(t) for t in texts) + 3 * len(texts) + 3
        assert count_prompt_now(request, tokenizer.count_tokens) == expected
    assert tokenizer.calls == 2, "the tokenizer ran on the loop over a long prompt"


async def test_the_prompt_is_counted_ahead_once_and_read_by_every_stage() -> None:
    local, remote = Tokenizer(), object()
    m = meter(local=local, remote=remote)
    ctx = RequestContext(request_id="req_counts", endpoint="chat")
    request = chat("one two three", "four")
    await m.count_ahead(ctx, request, ["remote", "local", "local"])
    assert ctx.prompt_counts is not None and ctx.prompt_counts.tokens == {"local": 4 + 3 * 2 + 3}
    assert local.ahead == 1  # once for the request, however often the route names the deployment
    assert m.prompt_for(ctx, request, "local") == 13 and local.calls == 0  # read, not counted again
    assert m.prompt_for(ctx, request, "remote") == count_prompt_now(request, estimate_text_tokens)
    continuation = chat("one two three", "four", "five six")  # another prompt: counted now
    assert m.prompt_for(ctx, continuation, "local") == 6 + 3 * 3 + 3 and local.calls == 3
    assert ctx.counted_prompt(request, "local") == 13 and ctx.counted_prompt(continuation, "local") is None


async def test_embedding_inputs_are_counted_ahead_with_their_token_arrays() -> None:
    local = Tokenizer()
    m = meter(embed=local)
    ctx = RequestContext(request_id="req_embed_counts", endpoint="embeddings")
    request = EmbeddingRequest(model="e", inputs=["one two", "three"])
    await m.count_ahead(ctx, request, ["embed"])
    assert ctx.counted_prompt(request, "embed") == 3
    arrays = EmbeddingRequest(model="e", inputs=[[1, 2, 3], [4]])
    await m.count_ahead(ctx, arrays, ["embed"])
    assert ctx.counted_prompt(arrays, "embed") == 4
