"""`margin fake-upstream` over real HTTP: the fake model, every fault kind, stats and runtime scripting.

Each test starts the app on a free loopback port (aiohttp's TestServer) and talks to it with a real
aiohttp client or with the openai_compat adapter itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer

from margin import errors
from margin.config.model import DeploymentConfig
from margin.providers.fake import engine
from margin.providers.fake.server import create_fake_app
from margin.providers.openai_compat import OpenAICompatProvider
from margin.types import ChatRequest, Chunk, EmbeddingRequest

HELLO = [{"role": "user", "content": "one two three four five six seven eight"}]


class Fake:
    def __init__(self, server: TestServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session
        self.providers: list[OpenAICompatProvider] = []

    @property
    def base(self) -> str:
        return str(self.server.make_url("/v1"))

    async def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        response = await self.session.post(self.server.make_url(path), data=orjson.dumps(body), headers=headers)
        await response.read()
        return response

    async def get_json(self, path: str) -> Any:
        async with self.session.get(self.server.make_url(path)) as response:
            return orjson.loads(await response.read())

    async def sse(self, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        response = await self.post("/v1/chat/completions", {"stream": True, **body}, headers)
        return response.status, await response.read()

    def provider(self, model: str = "fake-large", **timeouts: float) -> OpenAICompatProvider:
        deployment = DeploymentConfig.model_validate(
            {
                "name": "fake-dep",
                "provider": "openai_compat",
                "model": model,
                "base_url": self.base,
                "timeouts": {"connect": 1.0, "first_token": 2.0, "idle": 2.0, "total": 10.0, **timeouts},
            }
        )
        provider = OpenAICompatProvider(deployment)
        self.providers.append(provider)
        return provider


@pytest_asyncio.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    servers: list[Fake] = []

    async def run(**kwargs: Any) -> Fake:
        server = TestServer(create_fake_app(**kwargs))
        await server.start_server()
        fake = Fake(server, aiohttp.ClientSession())
        servers.append(fake)
        return fake

    yield run
    for fake in servers:
        for provider in fake.providers:
            await provider.aclose()
        await fake.session.close()
        await fake.server.close()


def data_lines(raw: bytes) -> list[bytes]:
    return [line[6:] for line in raw.split(b"\n") if line.startswith(b"data: ")]


def chat(**params: Any) -> ChatRequest:
    return ChatRequest(model="client", messages=HELLO, params=params)


async def drain(stream: AsyncIterator[Chunk], into: list[Chunk]) -> list[Chunk]:
    async for chunk in stream:
        into.append(chunk)
    return into


# --- healthy --------------------------------------------------------------------------------------


async def test_healthy_chat_is_the_engine_answer(start: Callable[..., Any]) -> None:
    fake = await start()
    response = await fake.post("/v1/chat/completions", {"model": "fake-large", "messages": HELLO, "max_tokens": 3})
    assert response.status == 200
    body = orjson.loads(await response.read())
    expected = engine.chat_completion(HELLO, "fake-large", engine.FakeBehaviour(), {"max_tokens": 3})
    assert {k: v for k, v in body.items() if k != "created"} == {k: v for k, v in expected.items() if k != "created"}
    assert body["choices"][0]["finish_reason"] == "length"


async def test_healthy_stream_ends_with_usage_and_done(start: Callable[..., Any]) -> None:
    fake = await start(behaviour=engine.FakeBehaviour(chunks=4))
    status, raw = await fake.sse({"model": "m", "messages": HELLO, "stream_options": {"include_usage": True}})
    lines = data_lines(raw)
    assert status == 200 and lines[-1] == b"[DONE]"
    chunks = [orjson.loads(x) for x in lines[:-1]]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1]) == HELLO[0]["content"]


async def test_completions_embeddings_and_models(start: Callable[..., Any]) -> None:
    fake = await start(behaviour=engine.FakeBehaviour(dimensions=8))
    completion = orjson.loads(await (await fake.post("/v1/completions", {"model": "i", "prompt": ["a", "b"]})).read())
    assert completion["object"] == "text_completion" and completion["choices"][0]["text"] == "a b"
    embedded = await fake.provider("fake-embedding").embed(EmbeddingRequest(model="e", inputs=["x"], params={}))
    assert len(embedded.body["data"][0]["embedding"]) == 8 and embedded.usage is not None
    sized = orjson.loads(
        await (await fake.post("/v1/embeddings", {"model": "e", "input": "x", "dimensions": 3})).read()
    )
    assert len(sized["data"][0]["embedding"]) == 3
    models = await fake.get_json("/v1/models")
    assert {"fake", "fake-embedding", "e", "i"} <= {m["id"] for m in models["data"]}


async def test_invalid_json_is_a_400(start: Callable[..., Any]) -> None:
    fake = await start()
    async with fake.session.post(fake.server.make_url("/v1/chat/completions"), data=b"{nope") as response:
        assert response.status == 400
    response = await fake.post("/v1/chat/completions", [1, 2])
    assert response.status == 400


# --- status faults --------------------------------------------------------------------------------


async def test_status_fault_with_retry_after(start: Callable[..., Any]) -> None:
    fake = await start(faults={"fake-large": "status=429,retry_after=2"})
    response = await fake.post("/v1/chat/completions", {"model": "fake-large", "messages": HELLO})
    assert response.status == 429
    assert response.headers["retry-after"] == "2"
    body = orjson.loads(await response.read())
    assert body["error"]["type"] == "rate_limit_error"
    with pytest.raises(errors.UpstreamRateLimit) as caught:
        await fake.provider().chat(chat())
    assert caught.value.retry_after == 2.0 and caught.value.retryable is True


@pytest.mark.parametrize(
    ("spec", "cls"),
    [
        ("status=400,code=context_length_exceeded", errors.ContextLengthExceeded),
        ("status=400,code=content_filter", errors.ContentFiltered),
        ("status=401", errors.UpstreamAuth),
        ("status=404", errors.UpstreamModelGone),
        ("status=500", errors.UpstreamServerError),
        ("status=503", errors.UpstreamOverloaded),
        ("status=529", errors.UpstreamOverloaded),
    ],
)
async def test_status_faults_classify(start: Callable[..., Any], spec: str, cls: type[errors.UpstreamError]) -> None:
    fake = await start(faults={"fake-large": spec})
    with pytest.raises(cls):
        await fake.provider().chat(chat())
    with pytest.raises(cls):
        await anext(fake.provider().stream(chat()))
    response = await fake.post("/v1/embeddings", {"model": "fake-large", "input": "x"})
    assert response.status == int(spec.split(",")[0].split("=")[1])


async def test_times_one_then_healthy(start: Callable[..., Any]) -> None:
    fake = await start(faults={"fake-large": "status=503,times=1"})
    provider = fake.provider()
    with pytest.raises(errors.UpstreamOverloaded):
        await provider.chat(chat())
    result = await provider.chat(chat())
    assert result.body["choices"][0]["message"]["content"] == HELLO[0]["content"]
    assert (await fake.get_json("/_fake/stats"))["calls"] == {"fake-large": 2}


async def test_header_fault_applies_to_one_request(start: Callable[..., Any]) -> None:
    fake = await start()
    faulted = await fake.post("/v1/chat/completions", {"model": "m", "messages": HELLO}, {"x-fake-fault": "status=502"})
    healthy = await fake.post("/v1/chat/completions", {"model": "m", "messages": HELLO})
    assert (faulted.status, healthy.status) == (502, 200)


# --- stream faults --------------------------------------------------------------------------------


async def test_cut_after_drops_the_connection_mid_stream(start: Callable[..., Any]) -> None:
    fake = await start(faults={"fake-large": "cut_after=2"}, behaviour=engine.FakeBehaviour(chunks=6))
    received: list[Chunk] = []
    with pytest.raises(errors.StreamInterrupted):
        await drain(fake.provider().stream(chat()), received)
    assert len(received) == 3  # the role chunk and 2 content events, then nothing
    assert all(c.body["choices"][0]["finish_reason"] is None for c in received)


async def test_malformed_at_sends_one_broken_event_that_breaks_the_stream(start: Callable[..., Any]) -> None:
    fake = await start(faults={"fake-large": "malformed_at=2"}, behaviour=engine.FakeBehaviour(chunks=4))
    status, raw = await fake.sse({"model": "fake-large", "messages": HELLO})
    lines = data_lines(raw)
    broken = [x for x in lines if x != b"[DONE]" and not x.endswith(b"}")]
    assert status == 200 and len(broken) == 1 and lines.index(broken[0]) == 2
    provider = fake.provider()
    received: list[Chunk] = []
    with pytest.raises(errors.MalformedUpstreamEvent):  # what event 2 carried is lost: never a whole answer
        await drain(provider.stream(chat()), received)
    pieces = engine.split_chunks(HELLO[0]["content"], 4)
    assert [c.body["choices"][0]["delta"].get("content") for c in received] == ["", pieces[0]]
    assert provider.malformed.events == 1


async def test_no_done_finishes_without_the_terminator(start: Callable[..., Any]) -> None:
    fake = await start(faults={"fake-large": "no_done"})
    status, raw = await fake.sse({"model": "fake-large", "messages": HELLO})
    assert status == 200 and b"[DONE]" not in raw and b'"finish_reason":"stop"' in raw
    chunks = await drain(fake.provider().stream(chat()), [])
    assert chunks[-1].usage is not None  # complete: finish_reason seen, no error


async def test_no_usage_omits_the_usage_chunk(start: Callable[..., Any]) -> None:
    fake = await start(faults={"fake-large": "no_usage"})
    chunks = await drain(fake.provider().stream(chat()), [])
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].body["choices"][0]["finish_reason"] == "stop"


async def test_first_token_delay(start: Callable[..., Any]) -> None:
    fake = await start(faults={"fake-large": "first_token=0.2"})
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await fake.session.post(
        fake.server.make_url("/v1/chat/completions"),
        data=orjson.dumps({"model": "fake-large", "messages": HELLO, "stream": True}),
    )
    headers_at = loop.time() - started
    first = await response.content.readline()
    first_at = loop.time() - started
    response.close()
    assert first.startswith(b"data: ")
    assert headers_at < 0.15  # headers at once...
    assert first_at >= 0.19  # ...the first event after the delay
    with pytest.raises(errors.UpstreamTimeout) as caught:
        await anext(fake.provider(first_token=0.1).stream(chat()))
    assert caught.value.error_code == "first_token_timeout"
    assert len(await drain(fake.provider(first_token=1.0).stream(chat()), [])) > 2


async def test_stall_after_is_an_idle_timeout(start: Callable[..., Any]) -> None:
    fake = await start(faults={"fake-large": "stall_after=1,stall=1.0"})
    received: list[Chunk] = []
    with pytest.raises(errors.UpstreamTimeout) as caught:
        await drain(fake.provider(idle=0.2).stream(chat()), received)
    assert caught.value.error_code == "idle_timeout"
    assert len(received) == 2


async def test_delay_holds_the_headers(start: Callable[..., Any]) -> None:
    fake = await start(faults={"fake-large": "delay=0.2"})
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await fake.provider().chat(chat())
    assert loop.time() - started >= 0.2
    assert result.body["choices"][0]["finish_reason"] == "stop"


async def test_reset_closes_the_connection_before_headers(start: Callable[..., Any]) -> None:
    fake = await start(faults={"fake-large": "reset,times=1"})
    with pytest.raises(errors.UpstreamConnection) as caught:
        await anext(fake.provider().stream(chat()))
    assert caught.value.retryable is True
    assert (await fake.provider().chat(chat())).body["object"] == "chat.completion"


# --- stats, reset and runtime scripting -----------------------------------------------------------


async def test_stats_count_every_call_per_model_and_reset_clears_them(start: Callable[..., Any]) -> None:
    fake = await start(faults={"b": "status=500,times=1"})
    for model in ("a", "a", "b", "b"):
        await fake.post("/v1/chat/completions", {"model": model, "messages": HELLO})
    await fake.post("/v1/embeddings", {"model": "a", "input": ["x"]})
    assert await fake.get_json("/_fake/stats") == {"calls": {"a": 3, "b": 2}, "total": 5}
    assert (await fake.post("/_fake/reset", {})).status == 200
    assert await fake.get_json("/_fake/stats") == {"calls": {}, "total": 0}
    # reset re-arms `times` but keeps the scripted faults
    assert (await fake.post("/v1/chat/completions", {"model": "b", "messages": HELLO})).status == 500


async def test_faults_can_be_scripted_and_removed_at_run_time(start: Callable[..., Any]) -> None:
    fake = await start()
    provider = fake.provider()
    await provider.chat(chat())
    response = await fake.post("/_fake/faults", {"fake-large": "status=503", "other": "cut_after=1"})
    assert response.status == 200
    assert orjson.loads(await response.read()) == {"faults": {"fake-large": "status=503", "other": "cut_after=1"}}
    with pytest.raises(errors.UpstreamOverloaded):
        await provider.chat(chat())
    response = await fake.post("/_fake/faults", {"fake-large": ""})
    assert orjson.loads(await response.read()) == {"faults": {"other": "cut_after=1"}}
    assert (await provider.chat(chat())).body["object"] == "chat.completion"


async def test_a_bad_runtime_script_is_rejected_and_not_installed(start: Callable[..., Any]) -> None:
    fake = await start(faults={"fake-large": "status=500"})
    response = await fake.post("/_fake/faults", {"fake-large": "explode=1"})
    assert response.status >= 400
    with pytest.raises(errors.UpstreamServerError):  # the previous script is still the one in force
        await fake.provider().chat(chat())


async def test_a_bad_runtime_script_is_a_400(start: Callable[..., Any]) -> None:
    fake = await start()
    response = await fake.post("/_fake/faults", {"m": "explode=1"})
    assert response.status == 400
