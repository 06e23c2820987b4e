"""The local llama.cpp adapter, left by its client mid-stream, bills what it generated (issue 15 item 2).

The local model reports usage only with its last chunk; before that, the meter counts with the
model's own tokenizer: the prompt (its texts, plus 3 tokens per message and 3 to prime the reply) and
the text the client received. The deployment is priced per token here ($1/M input, $2/M output) so
the cost is checked to the last digit.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from tests.conftest import HAS_LOCAL_MODEL

from margin.app import create_app
from margin.config import parse_config
from margin.pipeline.context import RequestContext
from margin.pipeline.handler import Pipeline
from margin.pipeline.record import RequestRecord
from margin.providers.local import LocalProvider
from margin.storage.memory import MemoryKeyStore
from margin.types import ChatRequest

pytestmark = [pytest.mark.local_model, pytest.mark.skipif(not HAS_LOCAL_MODEL, reason="needs the 'local' extra")]

CONFIG = """
deployments:
  - name: local
    provider: local
    model: SmolLM2-135M-Instruct
    local: {max_concurrency: 1, n_ctx: 512}
    price: {input: "1", output: "2"}
models:
  - {name: local, deployments: [local]}
"""
PROMPT = "Write a long story about the sea."


async def test_a_client_that_leaves_a_local_stream_is_billed_by_the_tokenizer() -> None:
    app = create_app(parse_config(CONFIG), key_store=MemoryKeyStore())
    pipeline: Pipeline = app.state.gateway.pipeline
    records: list[RequestRecord] = []
    pipeline.recorder.submit = records.append  # type: ignore[method-assign]
    local = app.state.gateway.providers["local"]
    assert isinstance(local, LocalProvider)
    await local.start()
    try:
        context = RequestContext(request_id="req_local", endpoint="chat")
        request = ChatRequest(
            model="local", messages=[{"role": "user", "content": PROMPT}], params={"max_tokens": 64, "temperature": 0}
        )
        stream = await pipeline.stream(context, request)
        received = [await anext(stream) for _ in range(4)]  # the role chunk and three pieces of text
        await stream.aclose()  # type: ignore[attr-defined]
    finally:
        await local.aclose()
    text = "".join(c.body["choices"][0]["delta"].get("content") or "" for c in received)
    assert text  # the model had begun answering
    (record,) = records
    assert record.status == "cancelled"
    usage = record.usage
    assert usage is not None and usage.estimated_buckets == ("input_uncached", "output")
    prompt_tokens = local.count_tokens(PROMPT) + 3 + 3
    assert (usage.input_uncached, usage.output) == (prompt_tokens, local.count_tokens(text))
    expected = (Decimal(prompt_tokens) * 1 + Decimal(local.count_tokens(text)) * 2) / 1_000_000
    assert context.cost is not None and context.cost.total.usd == expected
