"""Turn an upstream's HTTP error into the right `UpstreamError` class.

Structured error code first, then the status where it decides alone, message text last: providers
reuse 400 (and 413, 422) for context length and content filtering, and only their error codes (or
failing that, their words) tell. Words never override a telling status: a 429 that mentions "too
many tokens" is a rate limit, not a long prompt. What each class then causes (retry, fail over,
return) is `margin.resilience.error_actions`'s business.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson

from margin import errors

RETRY_AFTER_CAP_S = 60.0

_CONTEXT_CODES = {"context_length_exceeded", "string_above_max_length", "request_too_large"}
_CONTEXT_WORDS = (
    "context length",
    "context_length",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "context size",  # llama.cpp server: "exceeds the available context size"
    "exceed_context_size",
    "`inputs` tokens + `max_new_tokens`",  # TGI's 422 validation error
)
_FILTER_CODES = {"content_filter", "content_policy_violation"}
_FILTER_WORDS = ("content filter", "content management policy", "content_policy")


def classify_http_error(
    status: int, body: bytes, headers: Mapping[str, str], *, deployment: str
) -> errors.UpstreamError:
    message, code, etype, inner = _error_fields(body)
    retry_after = parse_retry_after(headers.get("retry-after"))
    extra: dict[str, Any] = {"deployment": deployment, "retry_after": retry_after}
    shown = f"{deployment}: upstream answered {status}: {message}"[:500]
    cls = _by_code(code, etype) or _by_status(status, etype) or _by_words(f"{message} {code or ''} {etype or ''}")
    if cls is errors.ContentFiltered and inner is not None:
        # The provider's own verdict (Azure's content_filter_result, ...) reaches the client as is.
        extra["details"] = {"provider_details": inner}
    return cls(shown, **extra)


def _by_code(code: str | None, etype: str | None) -> type[errors.UpstreamError] | None:
    """Structured error codes: the most reliable signal, when the provider sends one."""
    if code in _CONTEXT_CODES:
        return errors.ContextLengthExceeded
    if code in _FILTER_CODES:
        return errors.ContentFiltered
    if code == "insufficient_quota" or etype == "insufficient_quota":
        # Out of credit: retrying the same account cannot succeed, another deployment may.
        return errors.UpstreamAuth
    return None


def _by_status(status: int, etype: str | None) -> type[errors.UpstreamError] | None:
    """The status, where it alone decides. None for the 4xx that providers reuse for context length
    and content filtering (400, 413, 422): only the message can tell those apart."""
    if status == 429:
        return errors.UpstreamRateLimit
    if status in (401, 403):
        return errors.UpstreamAuth
    if status in (404, 410):
        return errors.UpstreamModelGone
    if status in (408, 504):
        return errors.UpstreamTimeout
    if status == 529 or status == 503 or etype == "overloaded_error":
        return errors.UpstreamOverloaded
    if status >= 500 or status < 400:
        return errors.UpstreamServerError
    return None


def _by_words(text: str) -> type[errors.UpstreamError]:
    """Message text, last: the 4xx answers the code and status left undecided."""
    lowered = text.lower()
    if any(w in lowered for w in _CONTEXT_WORDS):
        return errors.ContextLengthExceeded
    if any(w in lowered for w in _FILTER_WORDS):
        return errors.ContentFiltered
    return errors.UpstreamBadRequest


def _error_fields(body: bytes) -> tuple[str, str | None, str | None, Any]:
    """(message, code, type, inner details) of an error body, whichever of them it has."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return body[:300].decode("utf-8", "replace"), None, None, None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        message = str(error.get("message") or "")
        code = error.get("code")
        etype = error.get("type")
        inner = error.get("innererror") or error.get("content_filter_result") or error.get("content_filter_results")
        return (
            message,
            str(code) if code is not None else None,
            str(etype) if etype is not None else None,
            inner,
        )
    if isinstance(error, str):  # vLLM / llama.cpp / Ollama style: {"error": "..."}
        return error, None, None, None
    return body[:300].decode("utf-8", "replace"), None, None, None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form), capped so no upstream parks a request."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)
