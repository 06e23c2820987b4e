"""OpenAI and every OpenAI-compatible server (vLLM, TGI, llama.cpp server, Ollama, Together, Groq...).

Differences between those servers are configuration (`Capabilities`), not code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import orjson

from margin import errors
from margin.config.model import DeploymentConfig
from margin.metering.usage import openai_usage
from margin.providers import timing
from margin.providers.balance import Balancer, Endpoint, NoEndpoints
from margin.providers.classify import classify_http_error
from margin.providers.discovery import Discovery, Resolver, resolve_all
from margin.providers.malformed import MalformedCount
from margin.providers.sse import iter_sse
from margin.translate import strip_anthropic_extensions
from margin.translate._util import ANTHROPIC_PARAMS
from margin.translate.passthrough import Passthrough
from margin.types import JSON, ChatRequest, ChatResult, Chunk, EmbeddingRequest, EmbeddingResult

# How long a finished stream waits for its `[DONE]` before it is final anyway.
DONE_GRACE_S = 0.25


class OpenAICompatProvider:
    def __init__(self, deployment: DeploymentConfig, *, resolver: Resolver = resolve_all) -> None:
        self.deployment = deployment
        found = deployment.endpoints_from
        bases = [] if found else deployment.endpoints or [deployment.base_url or ""]  # the config guarantees one
        self.balancer = Balancer(bases, deployment.balance, discovered=found is not None)  # two choices + affinity
        self.discovery = Discovery(deployment.name, found, self.balancer, resolver=resolver) if found else None
        self._session: aiohttp.ClientSession | None = None
        self.malformed = MalformedCount(deployment.name)
        self.passthrough = Passthrough.of(deployment.passthrough)  # credential- and routing-shaped fields stay here
        self._headers = {"content-type": "application/json", **deployment.headers}
        key = deployment.api_key.resolve() if deployment.api_key else None
        if key:
            self._headers["authorization"] = f"Bearer {key}"

    @property
    def native_completions(self) -> bool:
        return self.deployment.capabilities.completions

    async def start(self) -> None:
        self._open_session()
        if self.discovery is not None:
            await self.discovery.start()  # the first resolution, then a refresh loop off the request path

    def _open_session(self) -> None:
        if self._session is None:
            t = self.deployment.timeouts
            connector = aiohttp.TCPConnector(limit=self.deployment.max_connections, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.idle),
                json_serialize=lambda o: orjson.dumps(o).decode(),
                skip_auto_headers=("User-Agent",),
            )

    async def aclose(self) -> None:
        if self.discovery is not None:
            await self.discovery.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _path_and_body(self, request: ChatRequest, *, stream: bool) -> tuple[str, JSON]:
        caps = self.deployment.capabilities
        if ANTHROPIC_PARAMS in request.params:
            request = strip_anthropic_extensions(request)
        body: JSON = dict(self.passthrough.filter(request.params))
        body["model"] = self.deployment.model
        if request.kind == "completion":
            path, body["prompt"] = "/completions", request.prompt
        else:
            path, body["messages"] = "/chat/completions", request.messages
        if not caps.parallel_tool_calls:
            body.pop("parallel_tool_calls", None)
        if stream:
            body["stream"] = True
            if caps.stream_options:
                # Always ask for usage so every streamed request is metered from the upstream's count.
                body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            else:
                body.pop("stream_options", None)
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)
        return path, body

    def _pick(self, body: JSON) -> Endpoint:
        """The replica for this call, counted in flight until `self.balancer.end`."""
        balancer, prefix = self.balancer, None
        if len(balancer.endpoints) > 1 and balancer.config.affinity_chars:
            start = body["messages"] if "messages" in body else body.get("prompt", body.get("input"))
            prefix = orjson.dumps(start).decode()[: balancer.config.affinity_chars]
        try:
            endpoint = balancer.pick(prefix)
        except NoEndpoints as exc:
            name = self.deployment.name
            raise errors.UpstreamConnection(f"{name}: {exc}", deployment=name) from exc
        balancer.begin(endpoint)
        return endpoint

    async def _post(self, endpoint: Endpoint, path: str, body: JSON) -> aiohttp.ClientResponse:
        self._open_session()
        assert self._session is not None
        data = orjson.dumps(body)
        timing.sent()
        try:
            response = await self._session.post(endpoint.base + path, data=data, headers=timing.trace_headers())
            self.balancer.reached(endpoint)
        except TimeoutError as exc:
            self.balancer.failed(endpoint)
            raise errors.UpstreamTimeout(
                f"{self.deployment.name}: connect timed out", deployment=self.deployment.name
            ) from exc
        except aiohttp.ClientError as exc:
            self.balancer.failed(endpoint)
            raise errors.UpstreamConnection(
                f"{self.deployment.name}: {type(exc).__name__}", deployment=self.deployment.name
            ) from exc
        finally:
            timing.received()  # the status line and headers are in, or the connection failed
        if response.status >= 400:
            payload = await timing.read_body(response)
            response.release()
            raise classify_http_error(response.status, payload, response.headers, deployment=self.deployment.name)
        return response

    async def chat(self, request: ChatRequest) -> ChatResult:
        path, body = self._path_and_body(request, stream=False)
        endpoint = self._pick(body)
        try:
            async with asyncio.timeout(self.deployment.timeouts.non_streamed):
                response = await self._post(endpoint, path, body)
                payload = await timing.read_body(response)
        except TimeoutError as exc:
            raise errors.UpstreamTimeout(
                f"{self.deployment.name}: no answer within {self.deployment.timeouts.non_streamed}s",
                deployment=self.deployment.name,
                code="first_token_timeout",
            ) from exc
        except aiohttp.ClientError as exc:
            raise errors.UpstreamConnection(
                f"{self.deployment.name}: {type(exc).__name__}", deployment=self.deployment.name
            ) from exc
        finally:
            self.balancer.end(endpoint)
        data = self.malformed.body(payload)
        usage = data.get("usage")
        return ChatResult(
            body=data,
            usage=openai_usage(usage) if usage else None,
            model=str(data.get("model") or self.deployment.model),
        )

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        path, body = self._path_and_body(request, stream=True)
        return self._stream(path, body)

    async def _stream(self, path: str, body: JSON) -> AsyncIterator[Chunk]:
        endpoint = self._pick(body)
        try:
            response, events, first = await self._first_event(endpoint, path, body)
        except BaseException:  # cancellation included: the endpoint's open-call count must come back; re-raised
            self.balancer.end(endpoint)
            raise
        try:
            async for chunk in _chunks(first, events, self.malformed):
                yield chunk
        finally:
            self.balancer.end(endpoint)
            response.release() if response.content.at_eof() else response.close()

    async def _first_event(
        self, endpoint: Endpoint, path: str, body: JSON
    ) -> tuple[aiohttp.ClientResponse, AsyncIterator[tuple[str, bytes]], tuple[str, bytes] | None]:
        name = self.deployment.name
        response: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(self.deployment.timeouts.first_token):
                response = await self._post(endpoint, path, body)
                events = iter_sse(response.content)
                first = await anext(events, None)
        except TimeoutError as exc:
            _close_response(response)  # stop the upstream generating (and billing) for nobody
            raise errors.UpstreamTimeout(
                f"{name}: no first token within {self.deployment.timeouts.first_token}s",
                deployment=name,
                code="first_token_timeout",
            ) from exc
        except aiohttp.ClientError as exc:
            _close_response(response)
            raise errors.UpstreamConnection(f"{name}: {type(exc).__name__}", deployment=name) from exc
        return response, events, first

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        params = self.passthrough.filter(request.params)
        body: JSON = {**params, "model": self.deployment.model, "input": request.inputs}
        endpoint = self._pick(body)
        try:
            response = await self._post(endpoint, "/embeddings", body)
            payload = await timing.read_body(response)
        except aiohttp.ClientError as exc:
            raise errors.UpstreamConnection(
                f"{self.deployment.name}: {type(exc).__name__}", deployment=self.deployment.name
            ) from exc
        finally:
            self.balancer.end(endpoint)
        data = self.malformed.body(payload)
        return EmbeddingResult(
            body=data,
            usage=openai_usage(data["usage"]) if data.get("usage") else None,
            model=str(data.get("model") or self.deployment.model),
        )

    async def health(self) -> bool:
        """Healthy while some replica answers /models (the first that does ends the probe)."""
        self._open_session()
        for endpoint in self.balancer.endpoints:
            if await self._answers(endpoint.base):
                return True
        return False

    async def _answers(self, base: str) -> bool:
        assert self._session is not None
        try:
            async with self._session.get(base + "/models", timeout=aiohttp.ClientTimeout(total=2)) as response:
                return response.status < 500
        except (aiohttp.ClientError, TimeoutError):
            return False


async def _chunks(
    first: tuple[str, bytes] | None, events: AsyncIterator[tuple[str, bytes]], malformed: MalformedCount
) -> AsyncIterator[Chunk]:
    """OpenAI chunks from SSE events; raises if the stream ends truncated or corrupted.

    A finished answer is final at once: after the finish reason, the usage-only chunk (OpenAI's
    last event) ends the stream without waiting for a `[DONE]` the upstream may never send, and a
    stall, a dropped connection or an unreadable event after the finish reason is the end of the
    answer (only its usage report is lost: the meter estimates it), not a failure. Before the
    finish reason, an event that is not valid JSON breaks the stream: what it carried is lost."""
    name = malformed.deployment
    finished = False
    pending = first
    try:
        while pending is not None:
            _, data = pending
            if data == b"[DONE]":
                break  # a [DONE] without any finish_reason is still a truncated answer
            chunk = _parse_chunk(data, name, malformed)
            if chunk is not None:
                finished = finished or _has_finish_reason(chunk.body)
                yield chunk
                if finished and chunk.usage is not None and not chunk.body.get("choices"):
                    await _grace_for_done(events)
                    return
            pending = await anext(events, None)
    except TimeoutError as exc:
        if finished:
            return
        raise errors.UpstreamTimeout(f"{name}: stream went idle", deployment=name, code="idle_timeout") from exc
    except aiohttp.ClientError as exc:
        if finished:
            return
        raise errors.StreamInterrupted(f"{name}: stream broke ({type(exc).__name__})", deployment=name) from exc
    except errors.MalformedUpstreamEvent:
        if finished:
            return  # counted; the answer the client has is whole
        raise
    if not finished:
        raise errors.StreamInterrupted(f"{name}: stream ended before the answer was finished", deployment=name)


async def _grace_for_done(events: AsyncIterator[tuple[str, bytes]]) -> None:
    """Only `[DONE]` can follow the usage chunk: wait a moment for it (so the connection goes back to
    the pool), never for long, and take a connection that drops meanwhile as the end it is."""
    with contextlib.suppress(TimeoutError, aiohttp.ClientError):
        async with asyncio.timeout(DONE_GRACE_S):
            await anext(events, None)


def _parse_chunk(data: bytes, name: str, malformed: MalformedCount) -> Chunk | None:
    if not data or data.isspace():
        return None  # an empty event (a keep-alive some servers send) carries nothing
    body = malformed.stream_event(data)
    if not isinstance(body, dict):
        return None  # valid JSON that is no chunk (a bare "ping" string): nothing was lost
    if "error" in body and "choices" not in body:
        error = body["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise errors.StreamInterrupted(f"{name}: upstream error mid-stream: {message}"[:500], deployment=name)
    usage = body.get("usage")
    return Chunk(body=body, usage=openai_usage(usage) if usage else None)


def _close_response(response: aiohttp.ClientResponse | None) -> None:
    if response is not None:
        response.close()


def _has_finish_reason(body: JSON) -> bool:
    for choice in body.get("choices") or ():  # noqa: SIM110 (a loop, not any(): runs for every chunk)
        if isinstance(choice, dict) and choice.get("finish_reason"):
            return True
    return False
