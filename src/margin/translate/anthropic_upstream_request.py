"""Outbound: the internal (OpenAI-shaped) `ChatRequest` -> an Anthropic Messages request body.

Used by the `anthropic` upstream adapter. Decisions worth knowing:

* `system`/`developer` messages, wherever they stand, are gathered in order into `system`
  (Anthropic has no mid-conversation system turn).
* `tool` messages become `tool_result` blocks in a user turn, and consecutive turns of the same
  role are merged, which is also what Anthropic does server-side.
* A trailing assistant message is a prefill; Anthropic refuses trailing whitespace there, so it
  is trimmed.
* `max_tokens` is required by Anthropic: `max_completion_tokens`, else `max_tokens`, else
  `default_max_tokens` (4096: enough for ordinary answers, small enough to keep a
  forgotten-limit request from reserving a model's whole output window against the budget).
* `temperature` is clamped to Anthropic's 0..1 (OpenAI allows 0..2): refusing it would only
  fail over to the next deployment for no benefit.
* `response_format` json_schema cannot be enforced on every Claude model. By default the
  schema becomes a system instruction (best effort, not a guarantee); with
  `native_json_schema=True` (for deployments of models that support structured outputs) it is
  sent as `output_config.format`, which Anthropic enforces.
* Dropped without error: seed, penalties, logprobs, logit_bias, OpenAI `metadata` (Anthropic's
  only accepts user_id), tool `strict`. `n` > 1 is refused.
"""

from __future__ import annotations

from typing import Any

from margin.errors import shown
from margin.translate._util import (
    ANTHROPIC_PARAMS,
    CACHE_CONTROL,
    IMAGE_MEDIA_TYPES,
    IS_ERROR,
    THINKING_BLOCKS,
    arguments_to_input,
    dumps,
    fail,
    parse_data_url,
    req_list,
    req_obj,
    req_str,
    to_tool_use_id,
)
from margin.types import JSON, ChatRequest

DEFAULT_MAX_TOKENS = 4096

_JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."


def build_messages_request(
    req: ChatRequest,
    *,
    model: str | None = None,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    native_json_schema: bool = False,
) -> JSON:
    """The Anthropic Messages body for `req`; `model` overrides `req.model` (the deployment's name)."""
    params = req.params
    if req.n > 1:
        raise fail("n", "Anthropic models return one choice per request; n must be 1")
    system, turns = _split(req.messages)
    if not turns:
        raise fail("messages", "at least one user or assistant message is required")
    max_tokens = req.max_output_tokens
    body: JSON = {
        "model": model or req.model,
        "max_tokens": default_max_tokens if max_tokens is None else max_tokens,
    }
    system.extend(_format_instruction(params.get("response_format"), native_json_schema))
    if system:
        body["system"] = system
    body["messages"] = turns
    body.update(_sampling(params))
    body.update(_tools(params))
    output_format = _native_format(params.get("response_format")) if native_json_schema else None
    if output_format is not None:
        body["output_config"] = {"format": output_format}
    if req.stream:
        body["stream"] = True
    _merge_extras(body, params.get(ANTHROPIC_PARAMS))
    return body


def _sampling(params: JSON) -> JSON:
    body: JSON = {}
    temperature = params.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == temperature:
        body["temperature"] = float(min(max(temperature, 0), 1))  # NaN excluded above: it compares false
    for key in ("top_p", "top_k"):
        if isinstance(params.get(key), int | float) and not isinstance(params[key], bool):
            body[key] = params[key]
    stop = params.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    stops = [s for s in stops if isinstance(s, str) and s]
    if stops:
        body["stop_sequences"] = stops
    user = params.get("user") or params.get("safety_identifier")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    return body


def _merge_extras(body: JSON, extras: object) -> None:
    """Anthropic-only fields of an Anthropic client's request; never overriding translated ones."""
    if not isinstance(extras, dict):
        return
    for key, value in extras.items():
        if key == "output_config" and isinstance(value, dict):
            body["output_config"] = {**value, **body.get("output_config", {})}
        elif key not in body:
            body[key] = value


# --- messages ---------------------------------------------------------------------------------------


def _split(messages: list[JSON]) -> tuple[list[JSON], list[JSON]]:
    system: list[JSON] = []
    turns: list[JSON] = []
    for i, item in enumerate(messages):
        param = f"messages.{i}"
        msg = req_obj(item, param)
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(msg.get("content"), f"{param}.content"))
            continue
        if role == "user":
            turn = ("user", _user_blocks(msg.get("content"), f"{param}.content"))
        elif role == "assistant":
            turn = ("assistant", _assistant_blocks(msg, param))
        elif role == "tool":
            turn = ("user", [_tool_result(msg, param)])
        else:
            raise fail(f"{param}.role", f"role {shown(role)} cannot be sent to an Anthropic model")
        _append(turns, *turn)
    _trim_prefill(turns)
    return system, turns


def _append(turns: list[JSON], role: str, blocks: list[JSON]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _trim_prefill(turns: list[JSON]) -> None:
    """Anthropic rejects a final assistant turn ending in whitespace ('prefill')."""
    if not turns or turns[-1]["role"] != "assistant":
        return
    blocks = turns[-1]["content"]
    if blocks and blocks[-1]["type"] == "text":
        text = blocks[-1]["text"].rstrip()
        if text:
            blocks[-1]["text"] = text
        else:
            blocks.pop()
    if not blocks:
        turns.pop()


def _text_blocks(content: object, param: str) -> list[JSON]:
    return [b for b in _user_blocks(content, param) if b["type"] == "text"]


def _user_blocks(content: object, param: str) -> list[JSON]:
    if content is None:
        return []
    if isinstance(content, str):
        return _text_block(content, None)
    blocks: list[JSON] = []
    for i, item in enumerate(req_list(content, param)):
        blocks.extend(_part(req_obj(item, f"{param}.{i}"), f"{param}.{i}"))
    return blocks


def _text_block(text: str, cache_control: object) -> list[JSON]:
    # Anthropic refuses empty and whitespace-only text blocks; they carry nothing for the model.
    if not text.strip():
        return []
    block: JSON = {"type": "text", "text": text}
    if cache_control is not None:
        block[CACHE_CONTROL] = cache_control
    return [block]


def _part(part: JSON, param: str) -> list[JSON]:
    kind = part.get("type")
    cache = part.get(CACHE_CONTROL)
    if kind == "text":
        return _text_block(req_str(part.get("text"), f"{param}.text"), cache)
    if kind == "refusal":
        return _text_block(req_str(part.get("refusal"), f"{param}.refusal"), cache)
    if kind == "image_url":
        block = _image(part.get("image_url"), f"{param}.image_url")
    elif kind == "file":
        block = _document(req_obj(part.get("file"), f"{param}.file"), f"{param}.file")
    else:
        raise fail(f"{param}.type", f"content part type {shown(kind)} cannot be sent to an Anthropic model")
    if cache is not None:
        block[CACHE_CONTROL] = cache
    return [block]


def _image(value: object, param: str) -> JSON:
    url = value if isinstance(value, str) else req_obj(value, param).get("url")
    url = req_str(url, f"{param}.url", non_empty=True)
    parsed = parse_data_url(url)
    if parsed is not None:
        media, data = parsed
        if media not in IMAGE_MEDIA_TYPES:
            raise fail(f"{param}.url", f"image type {shown(media)} is not one of {', '.join(IMAGE_MEDIA_TYPES)}")
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    if url.startswith("data:"):
        raise fail(f"{param}.url", "data URLs must be base64-encoded")
    return {"type": "image", "source": {"type": "url", "url": url}}


def _document(file: JSON, param: str) -> JSON:
    parsed = parse_data_url(file.get("file_data") or "") if isinstance(file.get("file_data"), str) else None
    if parsed is None or parsed[0] != "application/pdf":
        raise fail(
            f"{param}.file_data",
            "only inline base64 PDF files (data:application/pdf;base64,...) are supported",
        )
    block: JSON = {
        "type": "document",
        "source": {"type": "base64", "media_type": parsed[0], "data": parsed[1]},
    }
    if isinstance(file.get("filename"), str) and file["filename"] and file["filename"] != "document.pdf":
        block["title"] = file["filename"]
    return block


def _assistant_blocks(msg: JSON, param: str) -> list[JSON]:
    # Thinking first: Anthropic requires a turn's thinking blocks ahead of its text and tool_use.
    blocks = [b for b in msg.get(THINKING_BLOCKS) or [] if _verifiable(b)]
    blocks.extend(_user_blocks(msg.get("content"), f"{param}.content"))
    if isinstance(msg.get("refusal"), str):
        blocks.extend(_text_block(msg["refusal"], None))
    calls = msg.get("tool_calls")
    for j, call in enumerate(req_list(calls, f"{param}.tool_calls") if calls is not None else []):
        blocks.append(_tool_use(req_obj(call, f"{param}.tool_calls.{j}"), f"{param}.tool_calls.{j}"))
    return blocks


def _verifiable(block: object) -> bool:
    """Only thinking Anthropic signed can go back to it: an unsigned block is refused with a 400."""
    if not isinstance(block, dict):
        return False
    if block.get("type") == "redacted_thinking":
        return bool(block.get("data"))
    return block.get("type") == "thinking" and bool(block.get("signature"))


def _tool_use(call: JSON, param: str) -> JSON:
    function = req_obj(call.get("function"), f"{param}.function")
    block: JSON = {
        "type": "tool_use",
        "id": to_tool_use_id(req_str(call.get("id"), f"{param}.id", non_empty=True)),
        "name": req_str(function.get("name"), f"{param}.function.name", non_empty=True),
        "input": arguments_to_input(function.get("arguments", "")),
    }
    if call.get(CACHE_CONTROL) is not None:
        block[CACHE_CONTROL] = call[CACHE_CONTROL]
    return block


def _tool_result(msg: JSON, param: str) -> JSON:
    call_id = req_str(msg.get("tool_call_id"), f"{param}.tool_call_id", non_empty=True)
    block: JSON = {"type": "tool_result", "tool_use_id": to_tool_use_id(call_id)}
    content = _user_blocks(msg.get("content"), f"{param}.content")
    if content:
        block["content"] = content
    if msg.get(IS_ERROR) is True:
        block[IS_ERROR] = True
    if msg.get(CACHE_CONTROL) is not None:
        block[CACHE_CONTROL] = msg[CACHE_CONTROL]
    return block


# --- tools and response format ------------------------------------------------------------------


def _tools(params: JSON) -> JSON:
    raw = params.get("tools")
    if not raw:
        return {}
    tools = [_tool(req_obj(t, f"tools.{i}"), f"tools.{i}") for i, t in enumerate(req_list(raw, "tools"))]
    body: JSON = {"tools": tools}
    choice = _tool_choice(params.get("tool_choice"))
    if params.get("parallel_tool_calls") is False and choice.get("type") != "none":
        choice = {"type": "auto", **choice, "disable_parallel_tool_use": True}
    if choice:
        body["tool_choice"] = choice
    return body


def _tool(tool: JSON, param: str) -> JSON:
    if tool.get("type") != "function":
        raise fail(f"{param}.type", f"tool type {shown(tool.get('type'))} cannot be sent to an Anthropic model")
    function = req_obj(tool.get("function"), f"{param}.function")
    schema = function.get("parameters")
    out: JSON = {
        "name": req_str(function.get("name"), f"{param}.function.name", non_empty=True),
        # OpenAI allows omitting parameters (a no-argument function); Anthropic requires a schema.
        "input_schema": schema if isinstance(schema, dict) else {"type": "object", "properties": {}},
    }
    if isinstance(function.get("description"), str) and function["description"]:
        out["description"] = function["description"]
    if tool.get(CACHE_CONTROL) is not None:
        out[CACHE_CONTROL] = tool[CACHE_CONTROL]
    return out


def _tool_choice(choice: object) -> JSON:
    if choice in (None, "auto"):
        return {}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = req_str(choice["function"].get("name"), "tool_choice.function.name", non_empty=True)
        return {"type": "tool", "name": name}
    raise fail("tool_choice", "expected 'auto', 'none', 'required' or a named function")


def _schema_of(response_format: object) -> tuple[str, Any] | None:
    """('json_object', None) or ('json_schema', schema) for the response formats that need work."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return ("json_object", None)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return ("json_schema", schema if isinstance(schema, dict) else {"type": "object"})
    return None


def _format_instruction(response_format: object, native: bool) -> list[JSON]:
    found = _schema_of(response_format)
    if found is None or (native and found[0] == "json_schema"):
        return []
    if found[0] == "json_object":
        return [{"type": "text", "text": _JSON_OBJECT_INSTRUCTION}]
    text = f"{_JSON_OBJECT_INSTRUCTION} It must conform to this JSON schema:\n{dumps(found[1])}"
    return [{"type": "text", "text": text}]


def _native_format(response_format: object) -> JSON | None:
    found = _schema_of(response_format)
    if found is None or found[0] != "json_schema":
        return None
    return {"type": "json_schema", "schema": found[1]}
