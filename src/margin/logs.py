"""Log output: uvicorn's text format (the default) or one JSON object per line
(`logging: {format: json}`), each line naming the request it was logged in (request id and the
principal's key, org, team and user ids) and every secret-shaped string redacted.

The request is bound to a context variable when the API builds its context, so every line logged
in that request's task (and in tasks it starts), uvicorn's access line included, carries it. The
recorder and other background tasks run outside any request and log without these fields."""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from margin.errors import redact_secrets
from margin.types import Principal

LogFormat = Literal["text", "json"]


class LoggedRequest(Protocol):
    """What a log line may say about its request: ids only (never the key or the body)."""

    request_id: str
    principal: Principal


_CURRENT_REQUEST: ContextVar[LoggedRequest | None] = ContextVar("margin_logged_request", default=None)


def bind_request(request: LoggedRequest) -> None:
    """Name `request` in every line logged from here on in this task (and tasks it starts)."""
    _CURRENT_REQUEST.set(request)


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, the request's ids, the exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact_secrets(record.getMessage()),
        }
        entry.update(_request_fields())
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            _client, method, path, _version, status = record.args  # uvicorn's access-line arguments
            entry.update(method=method, path=redact_secrets(str(path)), status=status)
        if record.exc_info:
            entry["exception"] = redact_secrets(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def _request_fields() -> dict[str, str]:
    request = _CURRENT_REQUEST.get()
    if request is None:
        return {}
    p = request.principal
    return {"request_id": request.request_id, "key_id": p.key_id, "org": p.org, "team": p.team, "user": p.user}


def log_config(log_format: LogFormat, level: str) -> dict[str, Any] | None:
    """uvicorn's `log_config` for `log_format`: None for text (keep uvicorn's own); json sends
    uvicorn's and margin's loggers through one JSON handler on stderr (each worker applies it)."""
    if log_format == "text":
        return None
    upper = level.upper()
    handled = {"handlers": ["stderr"], "level": upper, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLineFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "uvicorn": handled,
            "uvicorn.error": {"level": upper},
            "uvicorn.access": handled,
            "margin": handled,
        },
    }


def json_line(message: str, *, logger: str = "margin", level: int = logging.INFO) -> str:
    """`message` as the JSON formatter writes it (for lines printed before logging is set up)."""
    record = logging.LogRecord(logger, level, __file__, 0, message, None, None)
    return JsonLineFormatter().format(record)
