"""Normalise provider usage payloads into `Usage` with disjoint buckets.

Each function takes the upstream's `usage` object (or, where noted, the whole response) as
decoded JSON and returns a `Usage` whose buckets add up to what the provider counted, each
token in exactly one bucket so it is priced once:

    input_uncached + input_cache_read + input_cache_write + input_audio + input_image = input
    output + output_reasoning + output_audio = output

Nothing here raises on bad data: see `margin.metering._numbers.count` for how missing, null,
negative and garbage values are read, and docs/pricing.md for the per-provider rules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from margin.metering._numbers import count, field, has_count, mapping
from margin.metering.estimate import estimate_tokens
from margin.metering.usage_anthropic import anthropic_stream_usage, anthropic_usage
from margin.types import Usage

__all__ = [
    "ServerTimings",
    "UsageDialect",
    "anthropic_stream_usage",
    "anthropic_usage",
    "estimate_tokens",
    "gemini_usage",
    "llamacpp_native_usage",
    "llamacpp_timings",
    "llamacpp_usage",
    "ollama_timings",
    "ollama_usage",
    "openai_responses_usage",
    "openai_usage",
    "usage_from_payload",
    "vllm_usage",
]

UsageDialect = Literal[
    "openai",
    "openai_responses",
    "vllm",
    "llamacpp",
    "llamacpp_native",
    "ollama",
    "ollama_openai",
    "anthropic",
    "anthropic_stream",
    "gemini",
]


def _split_input(total: int, cached: int, audio: int, image: int = 0) -> tuple[int, int, int, int]:
    """(uncached, cache_read, audio, image) from a prompt total that includes the others.

    A detail larger than what is left of the total is clamped: the provider's total wins,
    because it is the number the invoice is built from.
    """
    cached = min(cached, total)
    audio = min(audio, total - cached)
    image = min(image, total - cached - audio)
    return total - cached - audio - image, cached, audio, image


def _split_output(total: int, reasoning: int, audio: int) -> tuple[int, int, int]:
    """(text, reasoning, audio) from a completion total that includes the others."""
    reasoning = min(reasoning, total)
    audio = min(audio, total - reasoning)
    return total - reasoning - audio, reasoning, audio


def _prompt_total(usage: Mapping[str, Any], prompt_key: str, completion_key: str) -> int:
    """The prompt count, derived from `total_tokens - completion` when only those are present."""
    if has_count(usage, prompt_key):
        return count(usage.get(prompt_key))
    total = count(usage.get("total_tokens"))
    return max(total - count(usage.get(completion_key)), 0)


def openai_usage(usage: Any) -> Usage:
    """OpenAI chat/completions/embeddings `usage` (also Azure, vLLM, Groq, Together, Ollama /v1).

    `prompt_tokens` includes `prompt_tokens_details.cached_tokens` and `.audio_tokens`;
    `completion_tokens` includes `completion_tokens_details.reasoning_tokens` and
    `.audio_tokens`. Accepted/rejected prediction tokens stay in `output`: OpenAI bills both as
    completion tokens. A Responses-API shaped object (`input_tokens`/`output_tokens`) is
    recognised and handed to `openai_responses_usage`.
    """
    body = mapping(usage)
    if not has_count(body, "prompt_tokens") and has_count(body, "input_tokens"):
        return openai_responses_usage(body)
    prompt = _prompt_total(body, "prompt_tokens", "completion_tokens")
    prompt_details = mapping(body.get("prompt_tokens_details"))
    uncached, cached, audio_in, image_in = _split_input(
        prompt,
        count(prompt_details.get("cached_tokens")),
        count(prompt_details.get("audio_tokens")),
        count(prompt_details.get("image_tokens")),
    )
    completion_details = mapping(body.get("completion_tokens_details"))
    text_out, reasoning, audio_out = _split_output(
        count(body.get("completion_tokens")),
        count(completion_details.get("reasoning_tokens")),
        count(completion_details.get("audio_tokens")),
    )
    return Usage(
        input_uncached=uncached,
        input_cache_read=cached,
        output=text_out,
        output_reasoning=reasoning,
        input_audio=audio_in,
        output_audio=audio_out,
        input_image=image_in,
    )


def openai_responses_usage(usage: Any) -> Usage:
    """OpenAI Responses API `usage`: `input_tokens` (+ `input_tokens_details.cached_tokens`) and
    `output_tokens` (+ `output_tokens_details.reasoning_tokens`), totals inclusive as in chat."""
    body = mapping(usage)
    uncached, cached, _, _ = _split_input(
        _prompt_total(body, "input_tokens", "output_tokens"),
        count(field(body, "input_tokens_details", "cached_tokens")),
        0,
    )
    text_out, reasoning, _ = _split_output(
        count(body.get("output_tokens")),
        count(field(body, "output_tokens_details", "reasoning_tokens")),
        0,
    )
    return Usage(input_uncached=uncached, input_cache_read=cached, output=text_out, output_reasoning=reasoning)


def vllm_usage(usage: Any) -> Usage:
    """vLLM's OpenAI server. Same shape as OpenAI; `prompt_tokens_details` is `null` unless the
    server runs with `--enable-prompt-tokens-details`, which the defensive reader absorbs."""
    return openai_usage(usage)


def llamacpp_usage(response: Any) -> Usage:
    """llama.cpp server OpenAI-compatible response (pass the whole body: `usage` + `timings`).

    Cache reads come from `usage.prompt_tokens_details.cached_tokens` (newer servers) or else
    `timings.cache_n`. `timings.prompt_n` counts only the prompt tokens actually evaluated, so
    when `prompt_n + cache_n` exceeds `prompt_tokens` (servers that report the evaluated part
    only) the larger figure is the prompt size.
    """
    body = mapping(response)
    usage = mapping(body.get("usage"))
    timings = mapping(body.get("timings"))
    base = openai_usage(usage)
    cache_n = count(timings.get("cache_n"))
    if base.input_cache_read or not cache_n:
        return base
    prompt = max(base.input_total, count(timings.get("prompt_n")) + cache_n)
    uncached, cached, _, _ = _split_input(prompt, cache_n, 0)
    return Usage(
        input_uncached=uncached,
        input_cache_read=cached,
        output=base.output,
        output_reasoning=base.output_reasoning,
    )


def llamacpp_native_usage(response: Any) -> Usage:
    """llama.cpp server native `/completion` body: `tokens_evaluated` is the whole prompt,
    `tokens_cached` the part reused from the slot's KV cache, `tokens_predicted` the output."""
    body = mapping(response)
    uncached, cached, _, _ = _split_input(count(body.get("tokens_evaluated")), count(body.get("tokens_cached")), 0)
    return Usage(input_uncached=uncached, input_cache_read=cached, output=count(body.get("tokens_predicted")))


def ollama_usage(response: Any) -> Usage:
    """Ollama native `/api/chat` or `/api/generate` final body: `prompt_eval_count` and
    `eval_count`. Ollama omits `prompt_eval_count` when the whole prompt came from its cache;
    that reads as 0 input tokens (the caller may estimate instead, see `estimate_tokens`)."""
    body = mapping(response)
    return Usage(input_uncached=count(body.get("prompt_eval_count")), output=count(body.get("eval_count")))


def gemini_usage(usage_metadata: Any) -> Usage:
    """Gemini native `usageMetadata`. `promptTokenCount` includes `cachedContentTokenCount`;
    `candidatesTokenCount` excludes `thoughtsTokenCount`, which is billed as output."""
    body = mapping(usage_metadata)
    uncached, cached, _, _ = _split_input(
        count(body.get("promptTokenCount")), count(body.get("cachedContentTokenCount")), 0
    )
    return Usage(
        input_uncached=uncached,
        input_cache_read=cached,
        output=count(body.get("candidatesTokenCount")),
        output_reasoning=count(body.get("thoughtsTokenCount")),
    )


def _from_usage_key(response: Any, reader: Callable[[Any], Usage]) -> Usage:
    body = mapping(response)
    return reader(body["usage"]) if "usage" in body else reader(body)


def usage_from_payload(payload: Any, dialect: UsageDialect) -> Usage:
    """Dispatch on the upstream protocol. `payload` is the usage object or the whole response
    body (a `usage` key is followed); for `anthropic_stream` it is the list of stream events."""
    if dialect in ("openai", "vllm", "ollama_openai"):
        return _from_usage_key(payload, openai_usage)
    if dialect == "openai_responses":
        return _from_usage_key(payload, openai_responses_usage)
    if dialect == "anthropic":
        return _from_usage_key(payload, anthropic_usage)
    if dialect == "anthropic_stream":
        return anthropic_stream_usage(payload if isinstance(payload, list) else [])
    if dialect == "llamacpp":
        return llamacpp_usage(payload)
    if dialect == "llamacpp_native":
        return llamacpp_native_usage(payload)
    if dialect == "ollama":
        return ollama_usage(payload)
    body = mapping(payload)
    return gemini_usage(body.get("usageMetadata", body))


@dataclass(frozen=True, slots=True)
class ServerTimings:
    """Prefill and decode throughput a self-hosted server measured for one request."""

    prompt_tokens: int
    prompt_seconds: float
    output_tokens: int
    output_seconds: float

    @property
    def prompt_tokens_per_second(self) -> float | None:
        return self.prompt_tokens / self.prompt_seconds if self.prompt_seconds > 0 else None

    @property
    def output_tokens_per_second(self) -> float | None:
        return self.output_tokens / self.output_seconds if self.output_seconds > 0 else None


def _seconds(value: Any, per_second: float) -> float:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else 0
    return max(float(number), 0.0) / per_second


def llamacpp_timings(response: Any) -> ServerTimings:
    """`timings` of a llama.cpp response (milliseconds), for throughput-based self-hosted pricing."""
    timings = mapping(mapping(response).get("timings"))
    return ServerTimings(
        prompt_tokens=count(timings.get("prompt_n")),
        prompt_seconds=_seconds(timings.get("prompt_ms"), 1e3),
        output_tokens=count(timings.get("predicted_n")),
        output_seconds=_seconds(timings.get("predicted_ms"), 1e3),
    )


def ollama_timings(response: Any) -> ServerTimings:
    """Durations of an Ollama native response (nanoseconds)."""
    body = mapping(response)
    return ServerTimings(
        prompt_tokens=count(body.get("prompt_eval_count")),
        prompt_seconds=_seconds(body.get("prompt_eval_duration"), 1e9),
        output_tokens=count(body.get("eval_count")),
        output_seconds=_seconds(body.get("eval_duration"), 1e9),
    )
