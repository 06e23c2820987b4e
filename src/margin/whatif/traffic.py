"""Recorded traffic: one OpenAI chat-completions request/response pair per JSONL line.

Accepted fields (see docs/whatif.md):
  request      (object, required)  the chat-completions body as sent (`model`, `messages`, params)
  response     (object, optional)  the chat.completion answer: `model`, `usage`, `choices`
  timestamp    (required)          ISO-8601 text or Unix seconds; replay is in time order
  tenant       (str, optional)     the cache partition (margin's tenant); default "default"
  task         (str, optional)     a task name (e.g. "mmlu"), given to the router's task heads
  quality      (float, optional)   the grade of the recorded answer, 0-1
  tiers        (object, optional)  graded answers of other deployments for the same request:
               {"<model>": {"quality": 0-1, "usage": {OpenAI usage}}}
  volume_only  (bool, optional)    true: no `request.messages` (e.g. a ledger row without a body);
               counted for volume and cost only, never a cache hit, routed or sampled
A line that is not such a pair is reported with its line number and skipped; missing usage is
estimated (chars / 4) and flagged, never zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from margin.metering.estimate import estimate_message_tokens, estimate_text_tokens
from margin.metering.usage import openai_usage
from margin.types import ChatRequest, Usage

_REQUEST_KEYS = frozenset({"model", "messages", "stream", "stream_options"})


@dataclass(frozen=True, slots=True)
class TierAnswer:
    """A graded answer of another deployment to the same request."""

    quality: float | None
    usage: Usage | None  # None: priced from the recorded prompt with the recorded answer's length


@dataclass(frozen=True, slots=True)
class Record:
    line: int
    timestamp: float
    tenant: str
    task: str
    request: ChatRequest
    model: str
    usage: Usage
    usage_estimated: bool
    quality: float | None = None
    tiers: dict[str, TierAnswer] = field(default_factory=dict)
    answer: str = ""  # the recorded answer's text (the reference live samples are graded against)
    body: bool = True  # False: a `volume_only` line (no messages): volume and cost only


@dataclass(frozen=True, slots=True)
class Issue:
    line: int
    message: str


@dataclass
class Traffic:
    records: list[Record]
    issues: list[Issue]

    @property
    def estimated_usage(self) -> int:
        return sum(1 for r in self.records if r.usage_estimated)


class RecordError(ValueError):
    """One line is not a recorded chat-completions pair."""


def read_traffic(path: Path) -> Traffic:
    with path.open("rb") as handle:
        return parse_lines(enumerate(handle, start=1))


def parse_lines(lines: Iterable[tuple[int, bytes | str]]) -> Traffic:
    """Parse every line; bad lines become issues (with their line number), the rest records in time order."""
    records: list[Record] = []
    issues: list[Issue] = []
    for number, raw in lines:
        if not raw.strip():
            continue
        try:
            record = parse_record(orjson.loads(raw), number)
        except orjson.JSONDecodeError as exc:
            issues.append(Issue(number, f"line {number}: not JSON ({exc})"))
            continue
        except RecordError as exc:
            issues.append(Issue(number, f"line {number}: {exc}"))
            continue
        if record.usage_estimated:
            issues.append(Issue(number, f"line {number}: no usage in the response; tokens estimated (chars/4)"))
        records.append(record)
    records.sort(key=lambda r: (r.timestamp, r.line))
    return Traffic(records, issues)


def parse_record(data: Any, line: int) -> Record:
    if not isinstance(data, dict):
        raise RecordError("expected a JSON object with `request` and `timestamp`")
    body = data.get("request")
    volume_only = data.get("volume_only") is True
    if volume_only and isinstance(body, dict) and "messages" not in body:
        body = {**body, "messages": []}
    elif not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
        raise RecordError("`request` must be a chat-completions body with a non-empty `messages` list")
    raw_response = data.get("response")
    response: dict[str, Any] = raw_response if isinstance(raw_response, dict) else {}
    model = response.get("model") or body.get("model")
    if not isinstance(model, str) or not model:
        raise RecordError("no model: neither `response.model` nor `request.model` is a string")
    request = ChatRequest(
        model=str(body.get("model") or model),
        messages=list(body["messages"]),
        params={k: v for k, v in body.items() if k not in _REQUEST_KEYS},
    )
    usage, estimated = _usage(response, request)
    return Record(
        line=line,
        timestamp=_timestamp(data.get("timestamp")),
        tenant=str(data.get("tenant") or "default"),
        task=str(data.get("task") or "default"),
        request=request,
        model=model,
        usage=usage,
        usage_estimated=estimated,
        quality=_quality(data.get("quality"), "quality"),
        tiers=_tiers(data.get("tiers")),
        answer=_answer_text(response),
        body=not volume_only,
    )


def _timestamp(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    raise RecordError("`timestamp` must be ISO-8601 text or Unix seconds")


def _quality(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise RecordError(f"`{name}` must be a number from 0 to 1")
    return float(value)


def _answer_text(response: dict[str, Any]) -> str:
    choices = response.get("choices")
    if not isinstance(choices, list):
        return ""
    parts = [c.get("message", {}).get("content") for c in choices if isinstance(c, dict)]
    return "".join(p for p in parts if isinstance(p, str))


def _usage(response: dict[str, Any], request: ChatRequest) -> tuple[Usage, bool]:
    usage = response.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        return openai_usage(usage), False
    prompt = estimate_message_tokens(request.messages)
    answer = estimate_text_tokens(_answer_text(response))
    return Usage(input_uncached=max(prompt, 1), output=answer, source="estimated"), True


def _tiers(value: Any) -> dict[str, TierAnswer]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError("`tiers` must map a model name to {quality, usage}")
    tiers: dict[str, TierAnswer] = {}
    for name, answer in value.items():
        if not isinstance(answer, dict):
            raise RecordError(f"`tiers.{name}` must be an object with `quality` and `usage`")
        usage = answer.get("usage")
        tiers[str(name)] = TierAnswer(
            quality=_quality(answer.get("quality"), f"tiers.{name}.quality"),
            usage=openai_usage(usage) if isinstance(usage, dict) else None,
        )
    return tiers


def last_user_prompt(record: Record) -> str:
    """The text the router reads: the last message's text content."""
    if not record.request.messages:
        return ""  # a volume-only line
    content = record.request.messages[-1].get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""
