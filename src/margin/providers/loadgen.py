"""Closed-loop load generator behind `margin bench-upstream`: OpenAI-compatible chat completions sent by a fixed
number of concurrent workers, one timed sample per request. Only the HTTP loop lives here; the statistics and
the conversion into a planner figure live in `margin.planner.measure`, which reads these samples by shape.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from margin.providers.sse import iter_sse

# Common three-letter words: each is one token for the usual BPE tokenizers (and for the fake upstream's
# four-characters-per-token count), so N words make a prompt of about N tokens.
_WORDS = (
    "the and for are but not you all any can had her was one our out day get has him his how man new now old "
    "see two way who boy did its let put say she too use act add age ago air arm art ask bad bag bed big box "
    "bus buy car cat cup cut dog dry ear eat egg end eye far few fit fly fun gas god gun hat hot ice job key "
    "kid law lay leg lie lot low map mix oil pay pen pet pot red run sea set sit six sky son sun tax tea ten "
    "top toy try war wet win yes yet"
)
VOCAB = tuple(_WORDS.split())
# Tokens the chat template and the instruction add around the word list.
FRAMING_TOKENS = 12
INSTRUCTION = "Continue this list of words:"


@dataclass(frozen=True, slots=True)
class LoadSpec:
    base_url: str
    model: str
    api_key: str | None = None
    input_tokens: int = 512
    output_tokens: int = 128
    stream: bool = True
    ignore_eos: bool = False
    timeout_s: float = 300.0

    @property
    def url(self) -> str:
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"


@dataclass(frozen=True, slots=True)
class RequestSample:
    ok: bool
    latency_s: float
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int = 0
    usage_reported: bool = False
    error: str = ""


@dataclass(frozen=True, slots=True)
class LevelRun:
    concurrency: int
    wall_s: float
    samples: tuple[RequestSample, ...]


def build_prompt(input_tokens: int, seed: int) -> str:
    """About `input_tokens` tokens once the chat template is added; the seed varies the words so that a
    prefix cache cannot serve one request from another."""
    words = random.Random(seed).choices(VOCAB, k=max(1, input_tokens - FRAMING_TOKENS))
    return f"{INSTRUCTION} " + " ".join(words)


def chat_body(spec: LoadSpec, seed: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": spec.model,
        "messages": [{"role": "user", "content": build_prompt(spec.input_tokens, seed)}],
        "max_tokens": spec.output_tokens,
    }
    if spec.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    if spec.ignore_eos:
        body["ignore_eos"] = True  # vLLM / SGLang extension: always generate max_tokens
    return body


def _headers(spec: LoadSpec) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if spec.api_key:
        headers["authorization"] = f"Bearer {spec.api_key}"
    return headers


async def run_benchmark(
    spec: LoadSpec,
    levels: Sequence[int],
    requests_per_level: int,
    *,
    warmup: int = 1,
    on_level: Callable[[LevelRun], None] | None = None,
    on_request: Callable[[RequestSample], None] | None = None,
) -> list[LevelRun]:
    """Run each concurrency level in turn (at least one request per worker), after `warmup` unmeasured
    requests. `on_level` sees each level's run, `on_request` each measured request (progress)."""
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s, sock_connect=min(10.0, spec.timeout_s))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers=_headers(spec), timeout=timeout) as session:
        for index in range(warmup):
            await one_request(session, spec, seed=-1 - index)
        runs = []
        for level in levels:
            run = await run_level(session, spec, level, max(requests_per_level, level), on_request)
            runs.append(run)
            if on_level is not None:
                on_level(run)
    return runs


async def run_level(
    session: aiohttp.ClientSession,
    spec: LoadSpec,
    concurrency: int,
    requests: int,
    on_request: Callable[[RequestSample], None] | None = None,
) -> LevelRun:
    """`concurrency` workers share one queue of `requests` requests; each sends its next as soon as the last
    one ends."""
    pending: Iterator[int] = iter(range(requests))
    samples: list[RequestSample] = []

    async def worker() -> None:
        for index in pending:
            samples.append(await one_request(session, spec, seed=concurrency * 1_000_003 + index))
            if on_request is not None:
                on_request(samples[-1])

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LevelRun(concurrency, time.perf_counter() - start, tuple(samples))


async def one_request(session: aiohttp.ClientSession, spec: LoadSpec, seed: int) -> RequestSample:
    start = time.perf_counter()
    try:
        async with session.post(spec.url, data=orjson.dumps(chat_body(spec, seed))) as response:
            if response.status >= 400:
                detail = (await response.read())[:200].decode("utf-8", "replace")
                return _failed(start, f"HTTP {response.status}: {detail}")
            if spec.stream:
                return await _read_stream(response.content, start)
            return _read_json(await response.read(), start)
    except TimeoutError:
        return _failed(start, f"timed out after {spec.timeout_s:g} s")
    except aiohttp.ClientError as exc:
        return _failed(start, f"{type(exc).__name__}: {exc}")


def _failed(start: float, error: str) -> RequestSample:
    return RequestSample(ok=False, latency_s=time.perf_counter() - start, error=error)


@dataclass(slots=True)
class _StreamState:
    ttft_s: float | None = None
    chunks: int = 0
    finished: bool = False
    done: bool = False
    usage: dict[str, Any] | None = None
    error: str = ""


async def _read_stream(content: aiohttp.StreamReader, start: float) -> RequestSample:
    state = _StreamState()
    async for _, data in iter_sse(content):
        if data == b"[DONE]":
            state.done = True
            break
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            state.error = f"malformed stream event: {data[:80]!r}"
            break
        _absorb(state, event, time.perf_counter() - start)
        if state.error:
            break
    latency = time.perf_counter() - start
    if not state.error and not (state.done or state.finished):
        state.error = "stream ended without a finish reason or [DONE]"
    if state.error:
        return RequestSample(ok=False, latency_s=latency, ttft_s=state.ttft_s, error=state.error)
    return _sample(latency, state.ttft_s, state.usage, counted=state.chunks)


def _absorb(state: _StreamState, event: Any, elapsed: float) -> None:
    if not isinstance(event, dict):
        state.error = "stream event is not a JSON object"
        return
    if event.get("error"):
        state.error = f"error in stream: {str(event['error'])[:160]}"
        return
    if isinstance(event.get("usage"), dict):
        state.usage = event["usage"]
    for choice in event.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        raw = choice.get("delta")
        delta: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if delta.get("content") or delta.get("reasoning_content") or delta.get("tool_calls"):
            state.chunks += 1
            state.ttft_s = elapsed if state.ttft_s is None else state.ttft_s
        state.finished = state.finished or bool(choice.get("finish_reason"))


def _read_json(payload: bytes, start: float) -> RequestSample:
    latency = time.perf_counter() - start
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return RequestSample(ok=False, latency_s=latency, error="response is not JSON")
    if not isinstance(data, dict) or not data.get("choices"):
        return RequestSample(ok=False, latency_s=latency, error="response has no choices")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    text = "".join(str((c.get("message") or {}).get("content") or "") for c in data["choices"] if isinstance(c, dict))
    return _sample(latency, None, usage, counted=-(-len(text) // 4))


def _sample(latency: float, ttft: float | None, usage: dict[str, Any] | None, counted: int) -> RequestSample:
    """Token counts from the reported usage; without it, the counted content chunks (streaming: about one
    token each on vLLM / TGI / llama.cpp) or characters / 4 (non-streaming)."""
    completion = usage.get("completion_tokens") if usage else None
    prompt = usage.get("prompt_tokens") if usage else None
    reported = isinstance(completion, int)
    return RequestSample(
        ok=True,
        latency_s=latency,
        ttft_s=ttft,
        prompt_tokens=prompt if isinstance(prompt, int) else None,
        output_tokens=completion if isinstance(completion, int) else counted,
        usage_reported=reported,
    )
