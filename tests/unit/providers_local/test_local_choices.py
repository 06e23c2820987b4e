"""`n` on the local model: llama.cpp returns one choice, so `n` above 1 is a 400, not silently one
answer (issue 16, 2). Other requests to the same model are answered meanwhile."""

from __future__ import annotations

import pytest
from tests.unit.providers_local.test_local_slots import ScriptedModel, gateway, local

from margin import errors
from margin.pipeline.context import RequestContext
from margin.types import ChatRequest


def chat(n: int | None = None, stream: bool = False) -> ChatRequest:
    params: dict[str, object] = {"max_tokens": 3}
    if n is not None:
        params["n"] = n
    return ChatRequest(model="chat", messages=[{"role": "user", "content": "Hi"}], params=params, stream=stream)


@pytest.mark.parametrize("stream", [False, True])
async def test_n_above_one_is_refused_before_anything_is_generated(stream: bool) -> None:
    model = ScriptedModel(tokens=3)
    provider = local(model)
    await provider.start()
    try:
        with pytest.raises(errors.UpstreamBadRequest) as refused:
            if stream:
                await anext(provider.stream(chat(n=2, stream=True)))
            else:
                await provider.chat(chat(n=2))
        assert refused.value.status == 400 and refused.value.param == "n"
        assert refused.value.error_code == "unsupported_parameter"
        assert model.produced == 0
        result = await provider.chat(chat(n=1))  # one choice asked for: answered
        assert len(result.body["choices"]) == 1 and model.produced == 3
    finally:
        await provider.aclose()


async def test_through_the_pipeline_n_is_a_400_and_not_failed_over() -> None:
    """A refused request is the client's: the fake backup (which would honour n) is not asked."""
    _app, pipeline, provider = gateway(ScriptedModel(tokens=3))
    await provider.start()
    try:
        context = RequestContext(request_id="req_n", endpoint="chat")
        with pytest.raises(errors.UpstreamBadRequest):
            await pipeline.chat(context, chat(n=3))
        assert [a.deployment for a in context.attempts] == ["local"]
        other = RequestContext(request_id="req_other", endpoint="chat")
        result = await pipeline.chat(other, chat())
        assert other.deployment == "local" and len(result.body["choices"]) == 1
    finally:
        await provider.aclose()
