"""Adapters mark their upstream's part of an attempt: from the request write to the last byte read.

The openai_compat adapter runs against the fake upstream over real HTTP (aiohttp's TestServer),
with faults that make the upstream slow in a known way.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from tests.conftest import HAS_LOCAL_MODEL

from margin import errors
from margin.config.model import DeploymentConfig
from margin.providers import timing
from margin.providers.fake.adapter import FakeProvider
from margin.providers.fake.engine import FakeBehaviour
from margin.providers.fake.server import create_fake_app
from margin.providers.local import LocalProvider
from margin.providers.openai_compat import OpenAICompatProvider
from margin.types import ChatRequest, UpstreamClock

HELLO = ChatRequest(model="m", messages=[{"role": "user", "content": "one two three"}], params={})


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[Callable[..., Any]]:
    opened: list[tuple[TestServer, OpenAICompatProvider]] = []

    async def start(**faults: str) -> OpenAICompatProvider:
        server = TestServer(create_fake_app(faults=faults, behaviour=FakeBehaviour(chunks=3)))
        await server.start_server()
        deployment = DeploymentConfig.model_validate(
            {"name": "dep", "provider": "openai_compat", "model": "fake-large", "base_url": str(server.make_url("/v1"))}
        )
        provider = OpenAICompatProvider(deployment)
        opened.append((server, provider))
        return provider

    yield start
    for server, provider in opened:
        await provider.aclose()
        await server.close()


def tracked() -> UpstreamClock:
    clock = UpstreamClock()
    timing.track(clock)
    return clock


async def test_a_complete_answer_is_timed_from_the_write_to_its_last_byte(upstream: Callable[..., Any]) -> None:
    provider = await upstream(**{"fake-large": "delay=0.05"})
    clock = tracked()
    before = time.perf_counter()
    await provider.chat(HELLO)
    after = time.perf_counter()
    assert clock.sent_at is not None and clock.read_at is not None
    assert before <= clock.sent_at < clock.read_at <= after
    assert (clock.seconds() or 0) >= 0.05  # the upstream's delay is the upstream's time


async def test_a_stream_stops_counting_at_its_last_read(upstream: Callable[..., Any]) -> None:
    provider = await upstream(**{"fake-large": "pace=0.02"})
    clock = tracked()
    chunks = [chunk async for chunk in provider.stream(HELLO)]
    finished = time.perf_counter()
    await asyncio.sleep(0.05)  # the gateway busy after the stream: not the upstream's time
    assert len(chunks) >= 3
    assert clock.read_at is not None and clock.read_at <= finished
    assert (clock.seconds() or 0) >= 3 * 0.02


async def test_a_failed_attempt_is_timed_to_the_failure(upstream: Callable[..., Any]) -> None:
    provider = await upstream(**{"fake-large": "delay=0.03,status=503"})
    clock = tracked()
    with pytest.raises(errors.UpstreamError):
        await provider.chat(HELLO)
    assert (clock.seconds() or 0) >= 0.03


async def test_each_attempt_has_its_own_clock(upstream: Callable[..., Any]) -> None:
    provider = await upstream()
    first = tracked()
    await provider.chat(HELLO)
    second = tracked()
    await provider.chat(HELLO)
    assert first.read_at is not None and second.sent_at is not None and first.read_at <= second.sent_at


async def test_the_in_process_fake_counts_its_simulated_latency() -> None:
    deployment = DeploymentConfig.model_validate(
        {"name": "f", "provider": "fake", "model": "fake-small", "fake": {"latency_ms": 30}}
    )
    clock = tracked()
    await FakeProvider(deployment).chat(HELLO)
    assert (clock.seconds() or 0) >= 0.03


async def test_an_adapter_called_outside_any_attempt_still_answers(upstream: Callable[..., Any]) -> None:
    provider = await upstream()
    result = await asyncio.create_task(provider.chat(HELLO), context=contextvars.Context())  # no clock
    assert result.body["choices"]


@pytest.mark.local_model
@pytest.mark.skipif(not HAS_LOCAL_MODEL, reason="needs the 'local' extra")
async def test_the_local_models_queue_and_generation_are_its_upstream_time() -> None:
    deployment = DeploymentConfig.model_validate(
        {"name": "local", "provider": "local", "model": "SmolLM2-135M-Instruct", "local": {"n_ctx": 512}}
    )
    local = LocalProvider(deployment)
    await local.start()
    try:
        clock = tracked()
        before = time.perf_counter()
        seen: list[float] = []
        request = ChatRequest(model="local", messages=[{"role": "user", "content": "Hi"}], params={"max_tokens": 6})
        async for _ in local.stream(request):
            seen.append(time.perf_counter())
    finally:
        await local.aclose()
    assert clock.sent_at is not None and clock.read_at is not None
    assert before <= clock.sent_at <= seen[0]
    assert seen[-2] <= clock.read_at <= seen[-1]  # the generation's end; the usage chunk is margin's own
