"""The local adapter's slots without llama.cpp: a scripted model on the real worker threads.

A wedged worker (one that never returns, like llama.cpp stuck inside one evaluation) must make the
deployment unhealthy and its requests fail over; a request that ends early must stop its worker at
the next token and get the slot back; the wait for a slot counts towards the first-token timeout.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest

from margin import errors
from margin.app import create_app
from margin.config import parse_config
from margin.config.model import DeploymentConfig
from margin.pipeline.call import close_stream
from margin.pipeline.context import RequestContext
from margin.pipeline.handler import Pipeline
from margin.providers.local import LocalProvider
from margin.storage.memory import MemoryKeyStore
from margin.types import ChatRequest, Chunk

TIMEOUT_S = 0.3  # first token and idle; a worker asked to stop has as long again (min(idle, 10 s))


class ScriptedModel:
    """Stands in for `llama_cpp.Llama`: streams `tokens` words, `pace` seconds apart. While `wedge` is
    clear, a generation blocks before its first token and ignores every stop request, as llama.cpp
    does inside one evaluation."""

    def __init__(self, *, tokens: int = 5, pace: float = 0.0, wedge: threading.Event | None = None) -> None:
        self.tokens, self.pace, self.wedge = tokens, pace, wedge
        self.produced = 0  # tokens generated, over all generations
        self.n_tokens = 0

    def create_chat_completion(self, messages: list[Any], stream: bool = False, **kwargs: Any) -> Any:
        count = min(self.tokens, int(kwargs.get("max_tokens", 256)))
        if stream:
            return self._stream(count)
        assert "logprobs" in kwargs or "tools" in kwargs, "plain answers are streamed, so that they can stop"
        time.sleep(self.pace * count)  # one uninterruptible call
        self.produced += count
        message = {"role": "assistant", "content": " word" * count}
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 4, "completion_tokens": count, "total_tokens": 4 + count},
        }

    def _stream(self, count: int) -> Iterator[dict[str, Any]]:
        if self.wedge is not None:
            self.wedge.wait()
        yield _chunk({"role": "assistant"})
        for _ in range(count):
            time.sleep(self.pace)
            self.produced += 1
            yield _chunk({"content": " word"})
        self.n_tokens = 3 + count  # prompt + generated, less the last token sampled (never evaluated)
        yield _chunk({}, finish="length")

    def tokenize(self, data: bytes, add_bos: bool = False, special: bool = False) -> list[bytes]:
        return data.split()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0, "choices": [choice]}


def local(model: ScriptedModel, **timeouts: float) -> LocalProvider:
    deployment = DeploymentConfig.model_validate(
        {
            "name": "local",
            "provider": "local",
            "model": "scripted",
            "local": {"max_concurrency": 1, "max_queue": 4},
            "timeouts": {"first_token": TIMEOUT_S, "idle": TIMEOUT_S, **timeouts},
        }
    )
    return LocalProvider(deployment, load_model=lambda: model)


def chat(tokens: int = 5) -> ChatRequest:
    return ChatRequest(model="local", messages=[{"role": "user", "content": "Hi"}], params={"max_tokens": tokens})


async def wait_until(condition: Any, within: float) -> float:
    """Seconds until `condition()` held; fails after `within`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within, "condition not reached in time"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_wedged_worker_makes_the_deployment_unhealthy_until_it_returns() -> None:
    wedge = threading.Event()
    provider = local(ScriptedModel(wedge=wedge))
    await provider.start()
    try:
        with pytest.raises(errors.UpstreamTimeout) as timed_out:
            await anext(provider.stream(chat()))
        assert timed_out.value.error_code == "first_token_timeout"
        assert await provider.health()  # asked to stop: it has its grace period
        await wait_until(lambda: provider.slot_stats().stuck == 1, within=TIMEOUT_S + 1)
        assert not await provider.health()
        started = time.monotonic()
        with pytest.raises(errors.UpstreamServerError) as refused:  # at once: nothing to wait for
            await provider.chat(chat())
        assert time.monotonic() - started < 0.1
        assert refused.value.error_code == "local_worker_stuck" and refused.value.failover
        wedge.set()  # the worker returns after all: the slot is usable again
        await wait_until(lambda: provider.slot_stats().stuck == 0, within=1)
        assert await provider.health()
        result = await provider.chat(chat(3))
        assert result.usage is not None and result.usage.output == 3
    finally:
        wedge.set()
        await provider.aclose()


CONFIG = f"""
deployments:
  - name: local
    provider: local
    model: scripted
    price: {{input: "0", output: "0"}}
    local: {{max_concurrency: 1, max_queue: 4}}
    timeouts: {{first_token: {TIMEOUT_S}, idle: {TIMEOUT_S}}}
    circuit: {{failures: 2, window: 60, cooldown: 60}}
  - {{name: backup, provider: fake, model: small, price: {{input: "1", output: "2"}}}}
models:
  - {{name: chat, deployments: [local, backup]}}
"""


def gateway(model: ScriptedModel) -> tuple[Any, Pipeline, LocalProvider]:
    config = parse_config(CONFIG)
    provider = LocalProvider(config.deployments[0], load_model=lambda: model)
    app = create_app(config, providers={"local": provider}, key_store=MemoryKeyStore())
    pipeline: Pipeline = app.state.gateway.pipeline
    pipeline.recorder.submit = lambda record: None  # type: ignore[method-assign]
    return app, pipeline, provider


def ctx() -> RequestContext:
    return RequestContext(request_id="req_local", endpoint="chat")


async def test_a_wedged_local_model_fails_over_opens_its_circuit_and_says_so() -> None:
    wedge = threading.Event()
    app, pipeline, provider = gateway(ScriptedModel(wedge=wedge))
    state = app.state.gateway
    try:
        first = ctx()
        await pipeline.chat(first, ChatRequest(model="chat", messages=[{"role": "user", "content": "a"}]))
        assert [(a.deployment, a.status) for a in first.attempts] == [("local", "error"), ("backup", "ok")]
        await wait_until(lambda: provider.slot_stats().stuck == 1, within=TIMEOUT_S + 1)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 503  # this replica is wedged, though `backup` still answers
        assert ready.json() == {
            "status": "unavailable",
            "deployments": {"local": False, "backup": True},
            "stuck": ["local"],
        }
        for _ in range(2):  # the stuck slot fails requests at once; the circuit opens at its 2nd failure
            answered = ctx()
            started = time.monotonic()
            await pipeline.chat(answered, ChatRequest(model="chat", messages=[{"role": "user", "content": "b"}]))
            assert answered.deployment == "backup" and time.monotonic() - started < 0.2
        res = pipeline.caller.resilience
        (view,) = await res.circuits.views({"local": res.limits["local"].circuit})
        assert view.state == "open" and view.last_error == "server_error"
        skipped = ctx()
        await pipeline.chat(skipped, ChatRequest(model="chat", messages=[{"role": "user", "content": "c"}]))
        assert [a.deployment for a in skipped.attempts] == ["backup"]  # not even tried
        exported = state.metrics.render().decode()
        assert 'margin_local_slots{deployment="local",state="stuck"} 1.0' in exported
        assert 'margin_local_healthy{deployment="local"} 0.0' in exported
        assert 'margin_local_slots_stuck_total{deployment="local"} 1.0' in exported
    finally:
        wedge.set()
        await provider.aclose()


async def test_the_wait_for_a_slot_counts_towards_the_first_token_timeout() -> None:
    model = ScriptedModel(tokens=100, pace=0.02)
    provider = local(model)
    await provider.start()
    try:
        busy = provider.stream(chat(100))
        await anext(busy)  # holds the only slot for about 2 s
        started = time.monotonic()
        with pytest.raises(errors.UpstreamTimeout) as timed_out:
            await anext(provider.stream(chat()))
        assert timed_out.value.error_code == "first_token_timeout"
        assert TIMEOUT_S <= time.monotonic() - started < TIMEOUT_S + 0.3
        assert provider.slot_stats().waiting == 0  # the timed-out request left the queue
        await close_stream(busy)
    finally:
        await provider.aclose()


async def test_a_consumer_cancelled_at_every_await_still_stops_its_worker_and_frees_the_slot() -> None:
    """What Starlette does to a stream whose client hung up: an anyio cancel scope that cancels the
    reader again at every await of its cleanup."""
    model = ScriptedModel(tokens=200, pace=0.02)
    provider = local(model)
    await provider.start()
    try:
        read = 0

        async def reader(stream: AsyncIterator[Chunk]) -> None:
            nonlocal read
            async for _ in stream:
                read += 1

        async with anyio.create_task_group() as group:
            group.start_soon(reader, provider.stream(chat(200)))
            await wait_until(lambda: read >= 3, within=2)
            group.cancel_scope.cancel()
        freed_in = await wait_until(lambda: provider.slot_stats().idle == 1, within=1)
        assert freed_in < 0.2 and model.produced < 20  # stopped at the next token, not at 200
        assert provider.slot_stats().stop_requests_total == 1
        result = await provider.chat(chat(2))
        assert result.usage is not None and result.usage.output == 2
    finally:
        await provider.aclose()


async def test_a_stream_nobody_reads_any_more_stops_its_worker() -> None:
    model = ScriptedModel(tokens=500, pace=0.01)
    provider = local(model)
    await provider.start()
    try:
        abandoned = provider.stream(chat(500))
        await anext(abandoned)  # read once, then never again, and never closed
        await wait_until(lambda: provider.slot_stats().idle == 1, within=TIMEOUT_S + 1)
        assert model.produced < 200
        await close_stream(abandoned)
    finally:
        await provider.aclose()


async def test_a_non_streamed_answer_that_times_out_stops_its_worker() -> None:
    model = ScriptedModel(tokens=300, pace=0.01)
    provider = local(model, response=TIMEOUT_S)
    await provider.start()
    try:
        with pytest.raises(errors.UpstreamTimeout):
            await provider.chat(chat(300))
        await wait_until(lambda: provider.slot_stats().idle == 1, within=0.5)
        assert model.produced < 100  # stopped at the timeout, not after 300 tokens
    finally:
        await provider.aclose()


async def test_an_uninterruptible_answer_that_times_out_is_not_declared_stuck() -> None:
    """A request with logprobs runs as one llama.cpp call that cannot stop early: its slot comes
    back when the call ends, without being mistaken for a wedged worker."""
    model = ScriptedModel(tokens=100, pace=0.01)  # 1 s, past the timeout and a stop's grace
    provider = local(model, response=TIMEOUT_S)
    await provider.start()
    try:
        request = ChatRequest(
            model="local", messages=[{"role": "user", "content": "Hi"}], params={"max_tokens": 100, "logprobs": True}
        )
        with pytest.raises(errors.UpstreamTimeout):
            await provider.chat(request)
        await wait_until(lambda: provider.slot_stats().idle == 1, within=2)
        assert model.produced == 100 and provider.slot_stats().stuck_total == 0
        assert await provider.health()
    finally:
        await provider.aclose()


async def test_a_non_streamed_answer_is_assembled_from_the_stream() -> None:
    provider = local(ScriptedModel(tokens=3))
    await provider.start()
    try:
        result = await provider.chat(chat(3))
        choice = result.body["choices"][0]
        assert result.body["object"] == "chat.completion"
        assert choice["message"] == {"role": "assistant", "content": " word word word"}
        assert choice["finish_reason"] == "length"
        assert result.body["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    finally:
        await provider.aclose()


TIERED = f"""
deployments:
  - name: local
    provider: local
    model: scripted
    price: {{input: "0", output: "0"}}
    local: {{max_concurrency: 1, max_queue: 4}}
    timeouts: {{first_token: {TIMEOUT_S}, idle: {TIMEOUT_S}}}
  - {{name: premium, provider: fake, model: big, price: {{input: "2", output: "8"}}}}
models:
  - name: auto
    tiers:
      - {{name: local, deployments: [local]}}
      - {{name: premium, deployments: [premium]}}
    routing:
      rules:
        - {{name: chit-chat, when: {{max_prompt_tokens: 50}}, tier: local}}
"""


async def test_routed_requests_overflow_from_a_wedged_local_tier() -> None:
    wedge = threading.Event()
    config = parse_config(TIERED)
    provider = LocalProvider(config.deployments[0], load_model=lambda: ScriptedModel(wedge=wedge))
    app = create_app(config, providers={"local": provider}, key_store=MemoryKeyStore())
    pipeline: Pipeline = app.state.gateway.pipeline
    pipeline.recorder.submit = lambda record: None  # type: ignore[method-assign]
    try:
        for text in ("hi", "hello"):  # first by the first-token timeout, then at once: the slot is stuck
            context = ctx()
            started = time.monotonic()
            result = await pipeline.chat(
                context, ChatRequest(model="auto", messages=[{"role": "user", "content": text}])
            )
            assert result.model == "big" and context.deployment == "premium"
            assert [a.deployment for a in context.attempts] == ["local", "premium"]
            assert time.monotonic() - started < TIMEOUT_S + 0.3
            await wait_until(lambda: provider.slot_stats().stuck == 1, within=TIMEOUT_S + 1)
    finally:
        wedge.set()
        await provider.aclose()
