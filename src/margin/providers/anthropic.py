"""Anthropic's native Messages API: system prompt, tool use, streaming events, cache usage.

Translation to and from margin's OpenAI-shaped request lives in `margin.translate`; this module
only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

import aiohttp
import orjson

from margin import errors
from margin.config.model import DeploymentConfig
from margin.providers import timing
from margin.providers.classify import parse_retry_after
from margin.providers.malformed import MalformedCount
from margin.providers.sse import iter_sse
from margin.translate import (
    AnthropicStreamDecoder,
    build_messages_request,
    error_from_anthropic,
    message_to_chat_result,
)
from margin.translate.passthrough import Passthrough
from margin.types import JSON, ChatRequest, ChatResult, Chunk, EmbeddingRequest, EmbeddingResult

API_VERSION = "2023-06-01"


class AnthropicProvider:
    def __init__(self, deployment: DeploymentConfig) -> None:
        self.deployment = deployment
        self.passthrough = Passthrough.of(deployment.passthrough)  # credential- and routing-shaped fields stay here
        self._base = (deployment.base_url or "https://api.anthropic.com").rstrip("/")
        if self._base.endswith("/v1"):
            self._base = self._base[:-3]
        self._headers = {
            "content-type": "application/json",
            "anthropic-version": API_VERSION,
            **deployment.headers,
        }
        key = deployment.api_key.resolve() if deployment.api_key else None
        if key:
            self._headers["x-api-key"] = key
        self._session: aiohttp.ClientSession | None = None
        self.malformed = MalformedCount(deployment.name)

    @property
    def native_completions(self) -> bool:
        return False

    async def start(self) -> None:
        if self._session is None:
            t = self.deployment.timeouts
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.deployment.max_connections, keepalive_timeout=60),
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.idle),
            )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _body(self, request: ChatRequest, *, stream: bool) -> JSON:
        body = build_messages_request(request, model=self.deployment.model)
        body["stream"] = stream
        return self.passthrough.filter(body)  # an Anthropic client's own extra fields are forwarded

    async def _post(self, body: JSON) -> aiohttp.ClientResponse:
        if self._session is None:
            await self.start()
        assert self._session is not None
        name = self.deployment.name
        data = orjson.dumps(body)
        timing.sent()
        try:
            response = await self._session.post(self._base + "/v1/messages", data=data, headers=timing.trace_headers())
        except aiohttp.ClientError as exc:
            raise errors.UpstreamConnection(f"{name}: {type(exc).__name__}", deployment=name) from exc
        finally:
            timing.received()  # the status line and headers are in, or the connection failed
        if response.status >= 400:
            payload = await timing.read_body(response)
            response.release()
            error = error_from_anthropic(response.status, _loads(payload), deployment=name)
            error.retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise error
        return response

    async def chat(self, request: ChatRequest) -> ChatResult:
        name = self.deployment.name
        try:
            async with asyncio.timeout(self.deployment.timeouts.non_streamed):
                response = await self._post(self._body(request, stream=False))
                payload = await timing.read_body(response)
        except TimeoutError as exc:
            raise errors.UpstreamTimeout(
                f"{name}: no answer in time", deployment=name, code="first_token_timeout"
            ) from exc
        except aiohttp.ClientError as exc:
            raise errors.UpstreamConnection(f"{name}: {type(exc).__name__}", deployment=name) from exc
        return message_to_chat_result(self.malformed.body(payload))

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        return self._stream(self._body(request, stream=True))

    async def _stream(self, body: JSON) -> AsyncIterator[Chunk]:
        name = self.deployment.name
        decoder = AnthropicStreamDecoder(include_usage=True, deployment=name)
        response: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(self.deployment.timeouts.first_token):
                response = await self._post(body)
                events = iter_sse(response.content)
                first = await anext(events, None)
        except TimeoutError as exc:
            if response is not None:
                response.close()  # stop the upstream generating (and billing) for nobody
            raise errors.UpstreamTimeout(
                f"{name}: no first event in time", deployment=name, code="first_token_timeout"
            ) from exc
        except aiohttp.ClientError as exc:
            if response is not None:
                response.close()
            raise errors.UpstreamConnection(f"{name}: {type(exc).__name__}", deployment=name) from exc
        try:
            async with contextlib.aclosing(self._decoded(first, events, decoder)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except errors.UpstreamError as error:
            # Whatever broke the stream, the usage the upstream reported before it is billed.
            error.usage_so_far = decoder.usage_so_far
            raise
        finally:
            response.close()

    async def _decoded(
        self,
        first: tuple[str, bytes] | None,
        events: AsyncIterator[tuple[str, bytes]],
        decoder: AnthropicStreamDecoder,
    ) -> AsyncGenerator[Chunk, None]:
        """Chunks from SSE events, up to `message_stop`; raises when the stream breaks before it."""
        name = self.deployment.name
        pending = first
        try:
            while pending is not None:
                if pending[1].strip():  # an empty event carries nothing
                    data = self.malformed.stream_event(pending[1])
                    if isinstance(data, dict):
                        for chunk in decoder.feed(data):
                            yield chunk
                if decoder.done:
                    return  # message_stop is final: no need to wait for the upstream to close
                pending = await anext(events, None)
        except TimeoutError as exc:
            raise errors.UpstreamTimeout(f"{name}: stream went idle", deployment=name, code="idle_timeout") from exc
        except aiohttp.ClientError as exc:
            raise errors.StreamInterrupted(f"{name}: stream broke ({type(exc).__name__})", deployment=name) from exc
        raise errors.StreamInterrupted(f"{name}: stream ended before message_stop", deployment=name)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        raise errors.InvalidRequest(
            f"The model {request.model!r} is served by Anthropic, which has no embeddings API.", param="model"
        )

    async def health(self) -> bool:
        # Anthropic has no free probe endpoint; reachability of the host is what can be checked cheaply.
        if self._session is None:
            await self.start()
        assert self._session is not None
        try:
            async with self._session.get(self._base + "/v1/models", timeout=aiohttp.ClientTimeout(total=2)) as r:
                return r.status < 500
        except (aiohttp.ClientError, TimeoutError):
            return False


def _loads(payload: bytes) -> object:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
