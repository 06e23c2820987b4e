"""The one error tree. Every failure a client can see is a `MarginError`.

Each class knows its HTTP status, its OpenAI error `type` and `code`, and whether the failover
machinery may retry the same deployment or move to the next one. One handler
(`margin.api.errors`) renders them into the OpenAI envelope (or Anthropic's on /v1/messages).
"""

from __future__ import annotations

import re
import reprlib
from typing import Any, ClassVar


class MarginError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str | None] = None
    retryable: ClassVar[bool] = False  # may the same deployment be tried again?
    failover: ClassVar[bool] = False  # may the next deployment in the chain be tried?

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}
        self.details = details or {}
        if code is not None:
            self.code_override: str | None = code
        else:
            self.code_override = None

    @property
    def error_code(self) -> str | None:
        return self.code_override or self.code

    def to_openai(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.error_code,
        }
        error.update(self.details)
        return {"error": error}


# --- what a message may repeat of the client's input ----------------------------------------------

SHOWN_CHARS = 64


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """`repr(value)` for an error message, cut to `limit` characters: a model name, role or header
    a client sent is echoed so it can be recognised, never whole (a 7 MB model name once came
    back whole in its 404)."""
    if not isinstance(value, str):
        return reprlib.repr(value)[: limit + 8]  # reprlib's work is bounded however large the value
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value):,} characters)"


# --- the client's fault -------------------------------------------------------------------------


class InvalidRequest(MarginError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(InvalidRequest):
    status = 415
    code = "unsupported_media_type"


class ModelNotFound(InvalidRequest):
    status = 404
    code = "model_not_found"


class NotFound(InvalidRequest):
    status = 404
    code = "not_found"


class MethodNotAllowed(InvalidRequest):
    status = 405
    code = "method_not_allowed"


class Conflict(InvalidRequest):
    """The object is not in a state that allows this (a finished batch cannot be cancelled)."""

    status = 409
    code = "conflict"


class Unprocessable(InvalidRequest):
    """Well-formed JSON that does not describe a valid object (every problem named in the message)."""

    status = 422
    code = "invalid_object"


class RequestTimeout(InvalidRequest):
    """The client did not finish sending its request in time (server.header_timeout_s)."""

    status = 408
    code = "request_timeout"


class AuthError(MarginError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(MarginError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class BudgetExceeded(MarginError):
    # 402 is not retried by the OpenAI or Anthropic SDKs, which is what a spent budget needs.
    status = 402
    type = "insufficient_quota"
    code = "budget_exceeded"


class RateLimited(MarginError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


# --- the gateway's own trouble ------------------------------------------------------------------


class ServiceUnavailable(MarginError):
    status = 503
    type = "server_error"
    code = "service_unavailable"


class CapacityExceeded(ServiceUnavailable):
    """A local tier's queue is full: the router may spill to another tier."""

    code = "capacity_exceeded"
    failover = True


class ConfigError(MarginError):
    """Invalid configuration: raised at startup, never on the request path."""

    code = "config_error"


# --- an upstream's trouble ----------------------------------------------------------------------


class UpstreamError(MarginError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"
    failover = True

    def __init__(
        self, message: str, *, deployment: str | None = None, retry_after: float | None = None, **kwargs: Any
    ) -> None:
        # Upstream text reaches clients and logs: whatever in it is shaped like a secret goes first
        # (an upstream gateway may echo the credential margin sent it, or another client's).
        if kwargs.get("details"):
            kwargs["details"] = redact_json(kwargs["details"])
        super().__init__(redact_secrets(message), **kwargs)
        self.deployment = deployment
        self.retry_after = retry_after
        # What the upstream had reported of its usage when its stream failed (Anthropic reports the
        # input figures first): a `margin.types.Usage`, billed as reported, its open buckets
        # estimated. Typed `object` because this module sits beside margin.types, not above it.
        self.usage_so_far: object | None = None


class UpstreamRateLimit(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"
    retryable = True


class UpstreamOverloaded(UpstreamError):
    status = 503
    code = "upstream_overloaded"
    retryable = True


class UpstreamServerError(UpstreamError):
    status = 502
    code = "upstream_server_error"
    retryable = True


class LocalWorkerStuck(UpstreamServerError):
    """Every generation slot of an in-process model is held by a worker that did not stop when asked
    (the local provider's slot watchdog). Asking again cannot help: it fails over at once."""

    code = "local_worker_stuck"
    retryable = False


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


class UpstreamConnection(UpstreamError):
    status = 502
    code = "upstream_connection_error"
    retryable = True


class UpstreamAuth(UpstreamError):
    """The upstream rejected margin's credentials: the client can do nothing about it."""

    status = 502
    code = "upstream_auth_error"


class ContextLengthExceeded(UpstreamError):
    status = 400
    type = "invalid_request_error"
    code = "context_length_exceeded"


class ContentFiltered(UpstreamError):
    status = 400
    type = "invalid_request_error"
    code = "content_filter"
    failover = False


class UpstreamModelGone(UpstreamError):
    status = 502
    code = "upstream_model_not_found"


class UpstreamBadRequest(UpstreamError):
    """The upstream refused the request itself: another deployment would refuse it too."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_bad_request"
    failover = False


class MalformedUpstreamResponse(UpstreamServerError):
    """A 200 answer whose body is not the JSON object its protocol promises: a 502 that fails over."""

    code = "upstream_malformed_response"


class StreamInterrupted(UpstreamError):
    """The upstream stream broke after the client had already received content."""

    code = "stream_interrupted"


class MalformedUpstreamEvent(StreamInterrupted):
    """A streamed event that is not valid JSON: whatever it carried is lost, so the stream is broken."""

    code = "upstream_malformed_event"


# --- secrets in upstream text -------------------------------------------------------------------

REDACTED = "[redacted]"
# Shapes of credentials, each matched whole: provider keys (OpenAI's and Anthropic's sk-..., margin's
# own sk-margin-..., even OpenAI's masked "sk-ab***yz"), AWS, Google, GitHub, Hugging Face, Groq and
# xAI keys, JWTs, and the value of an Authorization scheme.
_SECRET_TOKENS = re.compile(
    r"\bsk-[A-Za-z0-9_*-]{3,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bAIza[0-9A-Za-z_-]{30,}"
    r"|\b(?:gh[pousr]|github_pat|hf|gsk)_[A-Za-z0-9_]{16,}"
    r"|\bxai-[A-Za-z0-9]{16,}"
    r"|\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"
    r"|(?i:\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{6,}"
)
# `api_key=...`, `"x-api-key": "..."`, `token: ...`: the value after a credential-shaped name.
_ASSIGNED_SECRET = re.compile(
    r"(?i)(\b(?:[a-z_-]*api[_-]?key|access[_-]?token|auth[_-]?token|secret|password|token|authorization)"
    r"[\"']?\s*[:=]\s*[\"']?)"
    r"(?!\[redacted\]|(?i:bearer|basic)\s)([^\s\"',;&}]{4,})"
)


def redact_secrets(text: str) -> str:
    """`text` with every key-shaped part replaced by REDACTED."""
    text = _SECRET_TOKENS.sub(_redact_token, text)
    return _ASSIGNED_SECRET.sub(lambda m: m.group(1) + REDACTED, text)


def redact_json(value: Any) -> Any:
    """JSON-like data with every string in it passed through `redact_secrets`."""
    if isinstance(value, str):
        return redact_secrets(value)
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(v) for v in value]
    return value


def _redact_token(match: re.Match[str]) -> str:
    scheme = re.match(r"(?i)(bearer|basic)\s+", match.group(0))
    return (scheme.group(0) if scheme else "") + REDACTED
