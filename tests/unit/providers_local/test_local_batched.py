"""The batched local engine (issue 23) on the real SmolLM2 model: batching must not change answers,
a request that leaves frees its sequence without disturbing the others, prefixes are reused, and
bad input is a clear 4xx."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.conftest import HAS_LOCAL_MODEL

from margin import errors
from margin.app import create_app
from margin.config import parse_config
from margin.config.model import DeploymentConfig
from margin.pipeline.context import RequestContext
from margin.pipeline.handler import Pipeline
from margin.providers.local import LocalProvider
from margin.providers.local_metrics import LocalSlotsCollector
from margin.storage.memory import MemoryKeyStore
from margin.types import ChatRequest

pytestmark = [pytest.mark.local_model, pytest.mark.skipif(not HAS_LOCAL_MODEL, reason="needs the 'local' extra")]

SYSTEM = "You are a helpful assistant who answers briefly and precisely."
QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about rain.",
    "Explain gravity briefly.",
    "List three fruits.",
    "Give me a JSON object with a name.",
    "Say hello in Spanish.",
    "What is 2+2?",
    "Name a famous painter.",
]


def provider(**local: Any) -> LocalProvider:
    settings = {"engine": "batched", "n_ctx": 512, **local}
    deployment = DeploymentConfig.model_validate(
        {"name": "local", "provider": "local", "model": "SmolLM2-135M-Instruct", "local": settings}
    )
    return LocalProvider(deployment)


def request(i: int, stream: bool = False) -> ChatRequest:
    """Eight requests with different settings, all greedy."""
    params: dict[str, Any] = {"max_tokens": 20 + 4 * i, "temperature": 0}
    settings: list[dict[str, Any]] = [
        {},
        {"stop": ["\n"]},
        {"presence_penalty": 0.5},
        {"stop": ["3"]},
        {"response_format": {"type": "json_object"}},
        {"frequency_penalty": 0.4},
        {"seed": 7},
        {"top_p": 0.5},
    ]
    params.update(settings[i])
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTIONS[i]}]
    return ChatRequest(model="local", messages=messages, params=params, stream=stream)


def text(result: Any) -> str:
    return str(result.body["choices"][0]["message"]["content"])


async def streamed(local: LocalProvider, req: ChatRequest) -> str:
    parts = [c.body["choices"][0]["delta"].get("content") or "" async for c in local.stream(req) if c.body["choices"]]
    return "".join(parts)


async def test_eight_concurrent_requests_each_get_the_answer_they_get_alone() -> None:
    local = provider(max_sequences=8)
    await local.start()
    try:
        alone = [text(await local.chat(request(i))) for i in range(8)]
        together = await asyncio.gather(
            *(local.chat(request(i)) for i in range(7)), streamed(local, request(7, stream=True))
        )
        assert [text(r) for r in together[:7]] + [together[7]] == alone
        assert alone[4].lstrip().startswith("{")  # the JSON grammar held inside the batch
        assert "\n" not in alone[1] and "3" not in alone[3]  # stop strings cut the answers
        assert local.engine is not None and local.engine.stats().active == 0
    finally:
        await local.aclose()


async def test_the_batched_engine_answers_as_the_slot_engine_did() -> None:
    answers = []
    for engine in ("slots", "batched"):
        local = provider(engine=engine)
        await local.start()
        try:
            answers.append([text(await local.chat(request(i))) for i in (0, 4)])
        finally:
            await local.aclose()
    assert answers[0] == answers[1]


async def test_a_q8_0_kv_cache_answers_alike_alone_batched_and_on_the_slot_engine() -> None:
    answers = []
    for engine in ("slots", "batched"):
        local = provider(engine=engine, kv_cache_type="q8_0", max_sequences=4)
        await local.start()
        try:
            answers.append([text(await local.chat(request(i))) for i in (0, 2, 4, 7)])
            if engine == "batched":
                together = await asyncio.gather(*(local.chat(request(i)) for i in (0, 2, 4, 7)))
                answers.append([text(r) for r in together])
        finally:
            await local.aclose()
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][2].lstrip().startswith("{")  # the JSON grammar holds with the quantized cache


async def test_a_stream_left_mid_answer_frees_its_sequence_and_the_others_go_on() -> None:
    local = provider(max_sequences=2, prefix_cache=0)
    await local.start()
    try:
        expected = text(await local.chat(request(2)))
        long = ChatRequest(
            model="local",
            messages=[{"role": "user", "content": "Write a long story."}],
            params={"max_tokens": 200, "temperature": 0},
            stream=True,
        )
        other = asyncio.create_task(local.chat(request(2)))
        stream = local.stream(long)
        for _ in range(3):
            await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        assert text(await other) == expected
        engine = local.engine
        assert engine is not None
        for _ in range(100):
            if local.slot_stats().busy == 0 and engine.stats().active == 0:
                break
            await asyncio.sleep(0.02)
        assert local.slot_stats().busy == 0 and engine.stats().active == 0
        assert engine.stats().generated_tokens < 200 + 64  # the left stream stopped early
        assert all(engine.seq_pos_max(seq) == -1 for seq in range(2))  # no cells kept (prefix_cache 0)
    finally:
        await local.aclose()


async def test_a_stream_left_during_its_prefill_frees_its_sequence() -> None:
    local = provider(max_sequences=2, prefill_chunk=16, n_ctx=2048)
    await local.start()
    try:
        await local.chat(request(0))  # weights loaded
        prompt = " ".join(["the quick brown fox jumps over the lazy dog"] * 120)
        long = ChatRequest(
            model="local",
            messages=[{"role": "user", "content": prompt}],
            params={"max_tokens": 8, "temperature": 0},
            stream=True,
        )
        stream = local.stream(long)

        async def first() -> Any:
            return await anext(stream)

        task = asyncio.create_task(first())
        engine = local.engine
        assert engine is not None
        for _ in range(200):
            if engine.stats().prefilling:
                break
            await asyncio.sleep(0.01)
        assert engine.stats().prefilling == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert text(await local.chat(request(6)))  # another request is answered meanwhile
        for _ in range(100):
            if local.slot_stats().busy == 0 and engine.stats().active == 0:
                break
            await asyncio.sleep(0.02)
        assert engine.stats().active == 0 and engine.stats().prefilled_tokens < 1000
    finally:
        await local.aclose()


async def test_a_shared_system_prompt_is_reused_not_prefilled_again() -> None:
    system = "You are a careful assistant. " * 20
    asks = [
        ChatRequest(
            model="local",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": q}],
            params={"max_tokens": 8, "temperature": 0},
        )
        for q in QUESTIONS[:2]
    ]
    cold = provider(prefix_cache=0)
    warm = provider(prefix_cache=4)
    answers = []
    for local in (cold, warm):
        await local.start()
        try:
            answers.append([text(await local.chat(ask)) for ask in asks])
        finally:
            await local.aclose()
    assert warm.engine is not None and cold.engine is not None
    stats = warm.engine.stats()
    assert stats.prefix_hits == 1 and stats.prefix_reused_tokens > local.count_tokens(system)
    assert cold.engine.stats().prefix_hits == 0
    assert stats.prefilled_tokens < cold.engine.stats().prefilled_tokens - local.count_tokens(system)
    assert answers[0] == answers[1]  # a reused prefix does not change the answer


async def test_a_full_queue_is_a_503_with_retry_after_and_a_long_prompt_a_400() -> None:
    local = provider(max_sequences=1, max_queue=0, n_ctx=128)
    await local.start()
    try:
        await local.chat(request(0))
        results = await asyncio.gather(local.chat(request(0)), local.chat(request(1)), return_exceptions=True)
        refused = [r for r in results if isinstance(r, errors.CapacityExceeded)]
        assert len(refused) == 1 and refused[0].status == 503 and refused[0].headers["retry-after"] == "1"
        too_long = ChatRequest(
            model="local", messages=[{"role": "user", "content": "word " * 300}], params={"max_tokens": 4}
        )
        with pytest.raises(errors.UpstreamBadRequest) as bad:
            await local.chat(too_long)
        assert bad.value.status == 400 and "context window" in str(bad.value)
        assert local.slot_stats().busy == 0
        assert text(await local.chat(request(0)))  # the model still answers
    finally:
        await local.aclose()


CONFIG = """
deployments:
  - name: local
    provider: local
    model: SmolLM2-135M-Instruct
    local: {max_sequences: 2, n_ctx: 512}
    price: {input: "0", output: "0"}
models:
  - {name: local, deployments: [local]}
"""


async def test_through_the_pipeline_n_above_one_is_a_400_and_metrics_show_the_engine() -> None:
    config = parse_config(CONFIG)
    local = LocalProvider(config.deployments[0])
    app = create_app(config, providers={"local": local}, key_store=MemoryKeyStore())
    pipeline: Pipeline = app.state.gateway.pipeline
    pipeline.recorder.submit = lambda record: None  # type: ignore[method-assign]
    await local.start()
    try:
        with pytest.raises(errors.UpstreamBadRequest) as bad:
            await pipeline.chat(
                RequestContext(request_id="r1", endpoint="chat"),
                ChatRequest(model="local", messages=[{"role": "user", "content": "Hi"}], params={"n": 2}),
            )
        assert bad.value.status == 400
        assert text(await local.chat(request(0)))
        samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in LocalSlotsCollector([local]).collect()
            for sample in family.samples
        }
        assert samples[("margin_local_sequences", (("deployment", "local"), ("state", "active")))] == 0
        assert samples[("margin_local_generated_tokens_total", (("deployment", "local"),))] > 0
        assert samples[("margin_local_prefix_lookups_total", (("deployment", "local"), ("result", "miss")))] >= 1
    finally:
        await local.aclose()
