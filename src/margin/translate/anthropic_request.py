"""Inbound: an Anthropic Messages request body (`POST /v1/messages`) -> the internal `ChatRequest`.

The body is validated as it is translated: whatever is wrong raises `InvalidRequest` naming the
field (`messages.2.content.0.tool_use_id`), never a KeyError or TypeError, so the endpoint can
answer 400 with Anthropic's error envelope.

What Anthropic has and OpenAI lacks travels in documented extension keys (see `_util`):
`cache_control` on the element that had it, `thinking_blocks` on assistant messages, `is_error`
on tool messages, and `params["anthropic"]` for request fields without an OpenAI equivalent
(thinking, service_tier, ...). The Anthropic upstream translator restores them, so an Anthropic
client talking to an Anthropic upstream loses nothing, prompt caching included.
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
    dumps,
    fail,
    req_bool,
    req_int,
    req_list,
    req_number,
    req_obj,
    req_str,
)
from margin.types import JSON, ChatRequest

# Fields translated one by one; anything else is kept verbatim under params["anthropic"].
_TRANSLATED = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "stream",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "tools",
        "tool_choice",
        "output_config",
    }
)
_ROLES = ("user", "assistant", "system")
_USER_BLOCKS = ("text", "image", "document", "tool_result")
_ASSISTANT_BLOCKS = ("text", "tool_use", "thinking", "redacted_thinking")
_TOOL_RESULT_BLOCKS = ("text", "image")


def parse_messages_request(body: object) -> ChatRequest:
    """Validate an Anthropic Messages body and translate it into a `ChatRequest`.

    Streaming requests always ask the upstream for usage: Anthropic's `message_delta` must carry it.
    """
    obj = req_obj(body, "body")
    model = req_str(_required(obj, "model"), "model", non_empty=True)
    max_tokens = req_int(_required(obj, "max_tokens"), "max_tokens", minimum=1)
    stream = obj.get("stream")
    stream = False if stream is None else req_bool(stream, "stream")
    messages = _system(obj.get("system"), "system") + _messages(_required(obj, "messages"))
    params: JSON = {"max_tokens": max_tokens}
    params.update(_sampling(obj))
    params.update(_tools(obj))
    # Always present (possibly empty): it marks the request as Anthropic-shaped, so the OpenAI
    # adapter knows to strip extension keys without scanning every message of every request.
    params[ANTHROPIC_PARAMS] = _extras(obj)
    return ChatRequest(model=model, messages=messages, params=params, stream=stream, include_usage=stream)


def _required(obj: JSON, key: str) -> Any:
    if obj.get(key) is None:
        raise fail(key, "field required")
    return obj[key]


def _sampling(obj: JSON) -> JSON:
    params: JSON = {}
    for key in ("temperature", "top_p"):
        if obj.get(key) is not None:
            params[key] = req_number(obj[key], key, low=0.0, high=1.0)
    if obj.get("top_k") is not None:
        params["top_k"] = req_int(obj["top_k"], "top_k", minimum=0)
    if obj.get("stop_sequences") is not None:
        stops = req_list(obj["stop_sequences"], "stop_sequences")
        params["stop"] = [req_str(s, f"stop_sequences.{i}") for i, s in enumerate(stops)]
    if obj.get("metadata") is not None:
        user_id = req_obj(obj["metadata"], "metadata").get("user_id")
        if user_id is not None:
            params["user"] = req_str(user_id, "metadata.user_id")
    return params


def _extras(obj: JSON) -> JSON:
    extras = {k: v for k, v in obj.items() if k not in _TRANSLATED and v is not None}
    output_config = obj.get("output_config")
    if output_config is not None:
        rest = {k: v for k, v in req_obj(output_config, "output_config").items() if k != "format"}
        if rest:
            extras["output_config"] = rest
    return extras


# --- system and messages --------------------------------------------------------------------------


def _system(value: object, param: str) -> list[JSON]:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "system", "content": value}] if value else []
    blocks = req_list(value, param)
    parts = [_text_part(req_obj(b, f"{param}.{i}"), f"{param}.{i}", ("text",)) for i, b in enumerate(blocks)]
    return [{"role": "system", "content": _collapse(parts)}] if parts else []


def _messages(value: object) -> list[JSON]:
    items = req_list(value, "messages")
    if not items:
        raise fail("messages", "at least one message is required")
    out: list[JSON] = []
    for i, item in enumerate(items):
        param = f"messages.{i}"
        msg = req_obj(item, param)
        role = msg.get("role")
        if role not in _ROLES:
            raise fail(f"{param}.role", f"expected one of {', '.join(_ROLES)}, got {shown(role)}")
        content = _required_content(msg, param, last=i == len(items) - 1 and role == "assistant")
        if role == "system":
            out.extend(_system(content, f"{param}.content"))
        elif role == "user":
            out.extend(_user(content, f"{param}.content"))
        else:
            out.append(_assistant(content, f"{param}.content"))
    return out


def _required_content(msg: JSON, param: str, *, last: bool) -> str | list[Any]:
    content = msg.get("content")
    if isinstance(content, str):
        # Anthropic accepts an empty turn only as the final assistant prefill.
        if not content and not last:
            raise fail(f"{param}.content", "must not be empty")
        return content
    blocks = req_list(content, f"{param}.content")
    if not blocks and not last:
        raise fail(f"{param}.content", "must contain at least one content block")
    return blocks


def _user(content: str | list[Any], param: str) -> list[JSON]:
    """One user turn; its tool_result blocks become OpenAI `tool` messages placed first.

    OpenAI requires tool messages to follow the assistant's tool_calls directly, while Anthropic
    puts results and new text in the same user turn: moving the results ahead keeps both valid.
    """
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[JSON] = []
    parts: list[JSON] = []
    for i, item in enumerate(content):
        block = _block(item, f"{param}.{i}", _USER_BLOCKS)
        if block["type"] == "tool_result":
            tools.append(_tool_result(block, f"{param}.{i}"))
        else:
            parts.append(_content_part(block, f"{param}.{i}"))
    user = [{"role": "user", "content": _collapse(parts)}] if parts else []
    return tools + user


def _assistant(content: str | list[Any], param: str) -> JSON:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    parts: list[JSON] = []
    calls: list[JSON] = []
    thinking: list[JSON] = []
    for i, item in enumerate(content):
        block = _block(item, f"{param}.{i}", _ASSISTANT_BLOCKS)
        kind = block["type"]
        if kind == "text":
            parts.append(_text_part(block, f"{param}.{i}", ("text",)))
        elif kind == "tool_use":
            calls.append(_tool_use(block, f"{param}.{i}"))
        else:
            thinking.append(_thinking(block, f"{param}.{i}"))
    message: JSON = {"role": "assistant", "content": _collapse(parts) if parts else (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message[THINKING_BLOCKS] = thinking
    return message


def _collapse(parts: list[JSON]) -> str | list[JSON]:
    """Plain text parts become one string (what every OpenAI server accepts); others stay parts."""
    if all(p["type"] == "text" and CACHE_CONTROL not in p for p in parts):
        return "\n".join(p["text"] for p in parts)
    return parts


# --- content blocks -------------------------------------------------------------------------------


def _block(item: object, param: str, allowed: tuple[str, ...]) -> JSON:
    block = req_obj(item, param)
    kind = block.get("type")
    if kind not in allowed:
        raise fail(f"{param}.type", f"expected one of {', '.join(allowed)}, got {shown(kind)}")
    return block


def _with_cache(target: JSON, block: JSON, param: str) -> JSON:
    if block.get(CACHE_CONTROL) is not None:
        target[CACHE_CONTROL] = req_obj(block[CACHE_CONTROL], f"{param}.{CACHE_CONTROL}")
    return target


def _text_part(block: JSON, param: str, allowed: tuple[str, ...]) -> JSON:
    _block(block, param, allowed)
    text = req_str(block.get("text"), f"{param}.text")
    return _with_cache({"type": "text", "text": text}, block, param)


def _content_part(block: JSON, param: str) -> JSON:
    kind = block["type"]
    if kind == "text":
        return _text_part(block, param, ("text",))
    if kind == "image":
        return _image_part(block, param)
    return _document_part(block, param)


def _image_part(block: JSON, param: str) -> JSON:
    source = req_obj(block.get("source"), f"{param}.source")
    kind = source.get("type")
    if kind == "base64":
        media = req_str(source.get("media_type"), f"{param}.source.media_type")
        if media not in IMAGE_MEDIA_TYPES:
            raise fail(f"{param}.source.media_type", f"expected one of {', '.join(IMAGE_MEDIA_TYPES)}")
        data = req_str(source.get("data"), f"{param}.source.data", non_empty=True)
        url = f"data:{media};base64,{data}"
    elif kind == "url":
        url = req_str(source.get("url"), f"{param}.source.url", non_empty=True)
    else:
        raise fail(f"{param}.source.type", f"expected 'base64' or 'url', got {shown(kind)}")
    return _with_cache({"type": "image_url", "image_url": {"url": url}}, block, param)


def _document_part(block: JSON, param: str) -> JSON:
    """PDFs become OpenAI `file` parts and plain-text documents text parts; other sources are refused."""
    source = req_obj(block.get("source"), f"{param}.source")
    kind = source.get("type")
    if kind == "base64" and source.get("media_type") == "application/pdf":
        data = req_str(source.get("data"), f"{param}.source.data", non_empty=True)
        title = block.get("title")
        filename = title if isinstance(title, str) and title else "document.pdf"
        file: JSON = {"filename": filename, "file_data": f"data:application/pdf;base64,{data}"}
        part: JSON = {"type": "file", "file": file}
    elif kind == "text":
        part = {"type": "text", "text": req_str(source.get("data"), f"{param}.source.data")}
    else:
        raise fail(f"{param}.source", "only base64 PDF and plain-text document sources are supported")
    return _with_cache(part, block, param)


def _tool_result(block: JSON, param: str) -> JSON:
    tool_use_id = req_str(block.get("tool_use_id"), f"{param}.tool_use_id", non_empty=True)
    content = block.get("content")
    converted: str | list[JSON]
    if content is None or isinstance(content, str):
        converted = content or ""
    else:
        parts = []
        for i, item in enumerate(req_list(content, f"{param}.content")):
            sub = _block(item, f"{param}.content.{i}", _TOOL_RESULT_BLOCKS)
            parts.append(_content_part(sub, f"{param}.content.{i}"))
        converted = _collapse(parts)
    message: JSON = {"role": "tool", "tool_call_id": tool_use_id, "content": converted}
    if block.get(IS_ERROR) is not None and req_bool(block[IS_ERROR], f"{param}.{IS_ERROR}"):
        message[IS_ERROR] = True
    return _with_cache(message, block, param)


def _tool_use(block: JSON, param: str) -> JSON:
    call_id = req_str(block.get("id"), f"{param}.id", non_empty=True)
    name = req_str(block.get("name"), f"{param}.name", non_empty=True)
    arguments = req_obj(block.get("input"), f"{param}.input")
    call: JSON = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": dumps(arguments)},
    }
    return _with_cache(call, block, param)


def _thinking(block: JSON, param: str) -> JSON:
    # Kept whole: Anthropic verifies the signature when thinking is passed back during tool use.
    if block["type"] == "redacted_thinking":
        return {"type": "redacted_thinking", "data": req_str(block.get("data"), f"{param}.data")}
    return {
        "type": "thinking",
        "thinking": req_str(block.get("thinking"), f"{param}.thinking"),
        "signature": req_str(block.get("signature"), f"{param}.signature"),
    }


# --- tools and structured output ----------------------------------------------------------------


def _tools(obj: JSON) -> JSON:
    params: JSON = {}
    if obj.get("tools") is not None:
        tools = req_list(obj["tools"], "tools")
        params["tools"] = [_tool(req_obj(t, f"tools.{i}"), f"tools.{i}") for i, t in enumerate(tools)]
    if obj.get("tool_choice") is not None:
        params.update(_tool_choice(req_obj(obj["tool_choice"], "tool_choice")))
    output_config = obj.get("output_config")
    if output_config is not None:
        fmt = req_obj(output_config, "output_config").get("format")
        if fmt is not None:
            params["response_format"] = _response_format(req_obj(fmt, "output_config.format"))
    return params


def _tool(tool: JSON, param: str) -> JSON:
    kind = tool.get("type")
    if kind not in (None, "custom"):
        # Server tools (web search, code execution, ...) run inside Anthropic and have no OpenAI form.
        raise fail(f"{param}.type", f"server tool {shown(kind)} is not supported; only custom tools are")
    function: JSON = {"name": req_str(tool.get("name"), f"{param}.name", non_empty=True)}
    if tool.get("description") is not None:
        function["description"] = req_str(tool["description"], f"{param}.description")
    function["parameters"] = req_obj(tool.get("input_schema"), f"{param}.input_schema")
    if tool.get("strict") is not None:
        function["strict"] = req_bool(tool["strict"], f"{param}.strict")
    return _with_cache({"type": "function", "function": function}, tool, param)


def _tool_choice(choice: JSON) -> JSON:
    kind = choice.get("type")
    params: JSON = {}
    if kind == "auto":
        params["tool_choice"] = "auto"
    elif kind == "any":
        params["tool_choice"] = "required"
    elif kind == "none":
        params["tool_choice"] = "none"
    elif kind == "tool":
        name = req_str(choice.get("name"), "tool_choice.name", non_empty=True)
        params["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise fail("tool_choice.type", f"expected one of auto, any, tool, none, got {shown(kind)}")
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and req_bool(disable, "tool_choice.disable_parallel_tool_use"):
        params["parallel_tool_calls"] = False
    return params


def _response_format(fmt: JSON) -> JSON:
    if fmt.get("type") != "json_schema":
        raise fail("output_config.format.type", f"expected 'json_schema', got {shown(fmt.get('type'))}")
    schema = req_obj(fmt.get("schema"), "output_config.format.schema")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}
