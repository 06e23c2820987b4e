"""Streams in both directions, as two small state machines.

* `AnthropicStreamDecoder` (upstream adapter): Anthropic SSE events, already JSON-decoded ->
  OpenAI `chat.completion.chunk` `Chunk`s. Usage arrives in two halves (input in
  `message_start`, cumulative output in `message_delta`), so the decoder keeps it: the role chunk
  carries the input half as `Chunk.usage_so_far` (output still open), `usage_so_far` says what is
  known at any point (for a stream that breaks), and the last chunk carries the final `Usage`.
* `AnthropicStreamEncoder` (`/v1/messages` endpoint): internal `Chunk`s -> Anthropic events
  (message_start, ping, content_block_start/delta/stop, message_delta, message_stop);
  `text_delta` picks out the plain text chunk whose one event the endpoint frames directly.
  `encode_sse` frames one event for the wire (the endpoint, `margin.api.anthropic.anthropic_events`,
  writes the same bytes one chunk at a time).

Anthropic-only stream content crosses the OpenAI shape in non-standard delta keys, which OpenAI
clients ignore: `reasoning_content` (thinking text, the de-facto key of OpenAI-compatible
servers), `thinking_signature` and `redacted_thinking`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from margin.translate._util import (
    DELTA_REASONING,
    DELTA_REDACTED,
    DELTA_SIGNATURE,
    dumps,
    get_int,
    get_list,
    get_obj,
    get_str,
    message_id,
    to_tool_use_id,
)
from margin.translate.anthropic_errors import error_from_anthropic
from margin.translate.anthropic_response import (
    finish_reason,
    stop_reason,
    usage_from_anthropic,
    usage_from_openai,
    usage_to_anthropic,
)
from margin.types import JSON, Chunk, Usage

# Delta keys other than role and content: a delta without any of them is plain text (the fast path).
_SPECIAL_DELTA_KEYS = frozenset(
    {DELTA_REASONING, "reasoning", DELTA_SIGNATURE, DELTA_REDACTED, "refusal", "tool_calls"}
)
_USAGE_COUNTS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")


def encode_sse(event: JSON) -> bytes:
    """One Anthropic SSE frame: the event name repeats the payload's `type`, as Anthropic sends it."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event.get('type', 'message')}\ndata: {data}\n\n".encode()


class AnthropicStreamDecoder:
    """Anthropic stream events -> OpenAI chunks, for one upstream response.

    `feed` each decoded event in order; an `error` event raises the matching `UpstreamError`.
    After `message_stop`, `done` is true and `usage` is final; a stream that ends before it was
    cut short (the adapter decides what that means).
    """

    def __init__(self, *, include_usage: bool = False, created: int | None = None, deployment: str | None = None):
        self._include_usage = include_usage
        self._created = int(time.time()) if created is None else created
        self._deployment = deployment
        self._id = "msg_unknown"
        self._model = ""
        self._usage: JSON = {}
        self._started = False  # message_start arrived: the input figures are known
        self._totals = False  # a message_delta arrived: the output count is final too
        self._tools: dict[int, int] = {}  # content block index -> OpenAI tool_calls index
        self._stop_reason: str | None = None
        self._done = False
        self._handlers: dict[str, Callable[[JSON], list[Chunk]]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    @property
    def done(self) -> bool:
        return self._done

    @property
    def usage(self) -> Usage:
        return usage_from_anthropic(self._usage)

    @property
    def usage_so_far(self) -> Usage | None:
        """What the upstream has reported so far; None before `message_start`. Until a
        `message_delta` brings the cumulative totals, the output count is only the floor
        `message_start` gave (usually 1), so the output bucket is named as still open."""
        if not self._started:
            return None
        usage = self.usage
        if self._totals:
            return usage
        return replace(usage, source="estimated", estimated_buckets=("output",))

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def feed(self, event: JSON) -> list[Chunk]:
        # ping, content_block_stop and event types added after this was written carry nothing to
        # relay; Anthropic's versioning policy asks clients to ignore unknown events.
        handler = self._handlers.get(get_str(event, "type"))
        return handler(event) if handler is not None else []

    def _chunk(self, delta: JSON, finish: str | None = None) -> Chunk:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return Chunk(body=self._envelope([choice]))

    def _envelope(self, choices: list[JSON]) -> JSON:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }

    def _message_start(self, event: JSON) -> list[Chunk]:
        message = get_obj(event, "message")
        self._id = get_str(message, "id", self._id)
        self._model = get_str(message, "model", self._model)
        self._merge_usage(get_obj(message, "usage"))
        self._started = True
        role = self._chunk({"role": "assistant", "content": ""})
        return [replace(role, usage_so_far=self.usage_so_far)]

    def _block_start(self, event: JSON) -> list[Chunk]:
        block = get_obj(event, "content_block")
        kind = get_str(block, "type")
        if kind == "tool_use":
            return [self._tool_start(get_int(event, "index") or 0, block)]
        if kind == "text" and get_str(block, "text"):
            return [self._chunk({"content": get_str(block, "text")})]
        if kind == "thinking" and get_str(block, "thinking"):
            return [self._chunk({DELTA_REASONING: get_str(block, "thinking")})]
        if kind == "redacted_thinking":
            return [self._chunk({DELTA_REDACTED: get_str(block, "data")})]
        return []

    def _tool_start(self, index: int, block: JSON) -> Chunk:
        tool_index = len(self._tools)
        self._tools[index] = tool_index
        # The start block's input is {} when the input streams as deltas; a non-empty one is whole.
        initial = get_obj(block, "input")
        function = {"name": get_str(block, "name"), "arguments": dumps(initial) if initial else ""}
        call = {"index": tool_index, "id": get_str(block, "id"), "type": "function", "function": function}
        return self._chunk({"tool_calls": [call]})

    def _block_delta(self, event: JSON) -> list[Chunk]:
        delta = get_obj(event, "delta")
        kind = get_str(delta, "type")
        if kind == "text_delta":
            out: JSON = {"content": get_str(delta, "text")}
        elif kind == "thinking_delta":
            out = {DELTA_REASONING: get_str(delta, "thinking")}
        elif kind == "signature_delta":
            out = {DELTA_SIGNATURE: get_str(delta, "signature")}
        elif kind == "input_json_delta":
            tool_index = self._tools.get(get_int(event, "index") or 0)
            fragment = get_str(delta, "partial_json")
            if tool_index is None or not fragment:
                return []
            out = {"tool_calls": [{"index": tool_index, "function": {"arguments": fragment}}]}
        else:
            return []  # citations_delta and future delta types have no OpenAI form
        return [self._chunk(out)]

    def _message_delta(self, event: JSON) -> list[Chunk]:
        reason = get_obj(event, "delta").get("stop_reason")
        if isinstance(reason, str):
            self._stop_reason = reason
        self._merge_usage(get_obj(event, "usage"))
        self._totals = self._totals or get_int(get_obj(event, "usage"), "output_tokens") is not None
        return []

    def _merge_usage(self, usage: JSON) -> None:
        # message_delta counts are cumulative totals, so they replace; absent ones keep the old value.
        for key in _USAGE_COUNTS:
            value = get_int(usage, key)
            if value is not None:
                self._usage[key] = value

    def _message_stop(self, event: JSON) -> list[Chunk]:
        if self._done:
            return []  # a repeated message_stop must not finish the choice twice
        self._done = True
        usage = self.usage
        final = self._chunk({}, finish_reason(self._stop_reason))
        if not self._include_usage:
            final.usage = usage
            return [final]
        # OpenAI's stream_options.include_usage shape: one last chunk, no choices, with usage.
        report = Chunk(body={**self._envelope([]), "usage": usage.to_openai()}, usage=usage)
        return [final, report]

    def _error(self, event: JSON) -> list[Chunk]:
        raise error_from_anthropic(None, event, deployment=self._deployment)


class AnthropicStreamEncoder:
    """Internal chunks -> Anthropic stream events, for one `/v1/messages` response.

    `feed` every chunk, then call `finish` once for the closing events. `message_start` carries
    the input usage as Anthropic's own API does: the upstream's figures when the first chunk brings
    them (`Chunk.usage_so_far`, from an Anthropic upstream), otherwise `input_tokens`, the prompt
    estimate the caller passes (an OpenAI-shaped upstream reports usage only at the end). The final
    counts go in `message_delta`, which Anthropic's SDKs apply.
    """

    def __init__(self, *, model: str, message_id: str | None = None, input_tokens: int = 0):
        self._model = model
        self._id = message_id
        self._input_tokens = input_tokens
        self._started = False
        self._finished = False
        self._next_index = 0
        self._open: tuple[str, int] | None = None  # (block kind, block index)
        self._tools: dict[int, int] = {}  # OpenAI tool_calls index -> content block index
        self._finish_reason: str | None = None
        self._usage: Usage | None = None

    @property
    def usage(self) -> Usage | None:
        return self._usage

    def feed(self, chunk: Chunk) -> list[JSON]:
        body = chunk.body
        events = self._start(body, chunk.usage_so_far) if not self._started else []
        if chunk.usage is not None:
            self._usage = chunk.usage
        elif isinstance(body.get("usage"), dict):
            self._usage = usage_from_openai(body["usage"])
        for choice in get_list(body, "choices"):
            # An Anthropic message has one choice; a choice that is not an object carries nothing.
            if isinstance(choice, dict) and get_int(choice, "index") in (0, None):
                delta = choice.get("delta")
                if isinstance(delta, dict) and delta:
                    events.extend(self._delta(delta))
                reason = choice.get("finish_reason")
                self._finish_reason = reason if isinstance(reason, str) else self._finish_reason
        return events

    def text_delta(self, chunk: Chunk) -> tuple[int, str] | None:
        """(block index, text) when `chunk` is a plain piece of the text block already open, the
        common chunk of a stream, whose one event is then `content_block_delta` with that text (the
        caller writes its bytes directly); None for any other chunk, which goes through `feed`."""
        if self._open is None or self._open[0] != "text" or chunk.usage is not None:
            return None
        body = chunk.body
        choices = body.get("choices")
        if "usage" in body or not isinstance(choices, list) or len(choices) != 1:
            return None
        choice = choices[0]
        if not isinstance(choice, dict) or choice.get("finish_reason") is not None or choice.get("index", 0) != 0:
            return None
        delta = choice.get("delta")
        if not isinstance(delta, dict) or not _SPECIAL_DELTA_KEYS.isdisjoint(delta):
            return None
        text = delta.get("content")
        return (self._open[1], text) if isinstance(text, str) and text else None

    def finish(self) -> list[JSON]:
        if self._finished:
            return []
        self._finished = True
        events = self._start({}) if not self._started else []
        events.extend(self._close())
        usage = usage_to_anthropic(self._usage or Usage())
        delta = {"stop_reason": stop_reason(self._finish_reason), "stop_sequence": None}
        events.append({"type": "message_delta", "delta": delta, "usage": usage})
        events.append({"type": "message_stop"})
        return events

    def _start(self, body: JSON, reported: Usage | None = None) -> list[JSON]:
        self._started = True
        self._id = self._id or message_id(body.get("id"))
        if reported is not None:
            usage = usage_to_anthropic(reported)
        else:
            usage = {**usage_to_anthropic(Usage()), "input_tokens": self._input_tokens}
        message: JSON = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [{"type": "message_start", "message": message}, {"type": "ping"}]

    def _delta(self, delta: JSON) -> list[JSON]:
        if _SPECIAL_DELTA_KEYS.isdisjoint(delta):  # the common chunk: text (and role) only
            text = delta.get("content")
            if isinstance(text, str) and text:
                return self._append("text", {"type": "text_delta", "text": text})
            return []
        events: list[JSON] = []
        reasoning = get_str(delta, DELTA_REASONING) or get_str(delta, "reasoning")
        if reasoning:
            events += self._append("thinking", {"type": "thinking_delta", "thinking": reasoning})
        if get_str(delta, DELTA_SIGNATURE):
            events += self._append("thinking", {"type": "signature_delta", "signature": delta[DELTA_SIGNATURE]})
            events += self._close()  # Anthropic sends the signature last: the block is complete
        if DELTA_REDACTED in delta:
            events += self._close() + self._open_block("redacted_thinking", get_str(delta, DELTA_REDACTED))
            events += self._close()
        text = get_str(delta, "content") + get_str(delta, "refusal")
        if text:
            events += self._append("text", {"type": "text_delta", "text": text})
        for position, call in enumerate(get_list(delta, "tool_calls")):
            events += self._tool_delta(call, position)
        return events

    def _append(self, kind: str, payload: JSON) -> list[JSON]:
        events = [] if self._open is not None and self._open[0] == kind else self._close() + self._open_block(kind)
        # Blocks open one at a time, so the open block is always the newest.
        return [*events, {"type": "content_block_delta", "index": self._next_index - 1, "delta": payload}]

    def _open_block(self, kind: str, data: str = "", tool: tuple[str, str] = ("", "")) -> list[JSON]:
        index = self._next_index
        self._next_index += 1
        self._open = (kind, index)
        block: JSON
        if kind == "text":
            block = {"type": "text", "text": ""}
        elif kind == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        elif kind == "redacted_thinking":
            block = {"type": "redacted_thinking", "data": data}
        else:
            block = {"type": "tool_use", "id": tool[0], "name": tool[1], "input": {}}
        return [{"type": "content_block_start", "index": index, "content_block": block}]

    def _close(self) -> list[JSON]:
        if self._open is None:
            return []
        index = self._open[1]
        self._open = None
        return [{"type": "content_block_stop", "index": index}]

    def _tool_delta(self, call: Any, position: int) -> list[JSON]:
        tool_index = get_int(call, "index")
        tool_index = position if tool_index is None else tool_index
        function = get_obj(call, "function")
        events: list[JSON] = []
        if tool_index not in self._tools:
            call_id = to_tool_use_id(get_str(call, "id") or f"call_{tool_index}")
            events += self._close() + self._open_block("tool_use", tool=(call_id, get_str(function, "name")))
            self._tools[tool_index] = self._next_index - 1
        fragment = get_str(function, "arguments")
        if fragment:
            # A fragment for an earlier, already closed call (servers that interleave calls) still
            # goes to that call's index, which is how Anthropic's SDKs locate a block.
            events.append(
                {
                    "type": "content_block_delta",
                    "index": self._tools[tool_index],
                    "delta": {"type": "input_json_delta", "partial_json": fragment},
                }
            )
        return events
