"""The `fake` provider in-process: the fake model without a socket, for unit tests and demos."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from margin.config.model import DeploymentConfig, FakeSettings
from margin.metering.usage import openai_usage
from margin.providers import timing
from margin.providers.fake import engine
from margin.types import ChatRequest, ChatResult, Chunk, EmbeddingRequest, EmbeddingResult


class FakeProvider:
    def __init__(self, deployment: DeploymentConfig) -> None:
        self.deployment = deployment
        self.settings = deployment.fake or FakeSettings()
        self.behaviour = engine.FakeBehaviour(
            content=self.settings.content, chunks=self.settings.chunks, dimensions=self.settings.dimensions
        )
        self.calls = 0

    @property
    def native_completions(self) -> bool:
        return False

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def chat(self, request: ChatRequest) -> ChatResult:
        self.calls += 1
        timing.sent()  # the simulated latency is the upstream's time
        if self.settings.latency_ms:
            await asyncio.sleep(self.settings.latency_ms / 1000)
        timing.received()
        body = engine.chat_completion(request.messages, self.deployment.model, self.behaviour, request.params)
        return ChatResult(body=body, usage=openai_usage(body["usage"]), model=self.deployment.model)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.calls += 1
        timing.sent()
        if self.settings.latency_ms:
            await asyncio.sleep(self.settings.latency_ms / 1000)
        params = {**request.params, "stream_options": {"include_usage": True}}
        for body in engine.chat_chunks(request.messages, self.deployment.model, self.behaviour, params):
            timing.received()
            usage = body.get("usage")
            yield Chunk(body=body, usage=openai_usage(usage) if usage else None)
            if self.settings.chunk_delay_ms:
                await asyncio.sleep(self.settings.chunk_delay_ms / 1000)
        timing.received()  # the end of the stream

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        self.calls += 1
        timing.sent()
        timing.received()  # answered in no time
        dims = request.params.get("dimensions")
        body = engine.embeddings(
            request.inputs, self.deployment.model, dims if isinstance(dims, int) else self.settings.dimensions
        )
        return EmbeddingResult(body=body, usage=openai_usage(body["usage"]), model=self.deployment.model)

    async def health(self) -> bool:
        return True
