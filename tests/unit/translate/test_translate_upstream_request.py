"""ChatRequest (OpenAI shape) -> Anthropic Messages body, for the anthropic upstream adapter."""

from __future__ import annotations

from typing import Any

import pytest

from margin.errors import InvalidRequest
from margin.translate import (
    DEFAULT_MAX_TOKENS,
    build_messages_request,
    parse_messages_request,
    strip_anthropic_extensions,
)
from margin.types import ChatRequest


def chat(messages: list[dict[str, Any]], **params: Any) -> ChatRequest:
    return ChatRequest(model="claude-group", messages=messages, params=params)


def test_text_with_system_and_default_max_tokens() -> None:
    req = chat([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"}])
    out = build_messages_request(req, model="claude-haiku-4-5")
    assert out == {
        "model": "claude-haiku-4-5",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "system": [{"type": "text", "text": "Be terse."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
    }
    assert DEFAULT_MAX_TOKENS == 4096


def test_max_completion_tokens_wins_and_stream_flag() -> None:
    req = chat([{"role": "user", "content": "x"}], max_tokens=50, max_completion_tokens=70)
    req.stream = True
    out = build_messages_request(req, default_max_tokens=9)
    assert out["max_tokens"] == 70
    assert out["stream"] is True
    assert out["model"] == "claude-group"


def test_sampling_stop_user_and_dropped_fields() -> None:
    req = chat(
        [{"role": "user", "content": "x"}],
        temperature=1.7,
        top_p=0.5,
        top_k=20,
        stop="END",
        user="user-7",
        seed=3,
        presence_penalty=0.5,
        metadata={"k": "v"},
    )
    out = build_messages_request(req)
    assert out["temperature"] == 1.0  # clamped to Anthropic's range
    assert out["top_p"] == 0.5 and out["top_k"] == 20
    assert out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "user-7"}
    for dropped in ("seed", "presence_penalty", "stop", "user"):
        assert dropped not in out


def test_consecutive_roles_merge_and_developer_is_system() -> None:
    req = chat(
        [
            {"role": "developer", "content": "Rule 1"},
            {"role": "user", "content": "a"},
            {"role": "user", "content": [{"type": "text", "text": "b"}]},
            {"role": "system", "content": [{"type": "text", "text": "Rule 2"}]},
            {"role": "assistant", "content": "c"},
            {"role": "user", "content": "d"},
        ]
    )
    out = build_messages_request(req)
    assert out["system"] == [{"type": "text", "text": "Rule 1"}, {"type": "text", "text": "Rule 2"}]
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "c"}]},
        {"role": "user", "content": [{"type": "text", "text": "d"}]},
    ]


def test_tool_calls_and_tool_results() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        },
        {"type": "function", "function": {"name": "now"}},
    ]
    messages = [
        {"role": "user", "content": "Weather in Paris and London?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call.2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "not json"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call.2", "content": [{"type": "text", "text": "12C"}]},
        {"role": "user", "content": "Thanks, which is warmer?"},
    ]
    out = build_messages_request(chat(messages, tools=tools, tool_choice="required", parallel_tool_calls=False))
    assert out["tools"] == [
        {
            "name": "get_weather",
            "input_schema": tools[0]["function"]["parameters"],
            "description": "Weather by city",
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assistant, results = out["messages"][1], out["messages"][2]
    assert assistant["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        # invalid arguments are kept, not dropped; invalid id characters are mapped consistently
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"_raw_arguments": "not json"}},
    ]
    assert results == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "18C"}]},
            {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "12C"}]},
            {"type": "text", "text": "Thanks, which is warmer?"},
        ],
    }
    assert len(out["messages"]) == 3


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, None),
        ("none", False, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "f"}},
            False,
            {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_tool_choice(choice: object, parallel: bool | None, expected: object) -> None:
    params: dict[str, Any] = {"tools": [{"type": "function", "function": {"name": "f"}}]}
    if choice is not None:
        params["tool_choice"] = choice
    if parallel is not None:
        params["parallel_tool_calls"] = parallel
    out = build_messages_request(chat([{"role": "user", "content": "x"}], **params))
    assert out.get("tool_choice") == expected


def test_tool_choice_without_tools_is_not_sent() -> None:
    out = build_messages_request(chat([{"role": "user", "content": "x"}], tool_choice="required"))
    assert "tool_choice" not in out and "tools" not in out


def test_images_data_url_and_http_url() -> None:
    content = [
        {"type": "text", "text": "What is in these?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://upload.wikimedia.org/cat.png"}},
    ]
    out = build_messages_request(chat([{"role": "user", "content": content}]))
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "What is in these?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}},
        {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/cat.png"}},
    ]


def test_prefill_trailing_whitespace_is_trimmed() -> None:
    req = chat([{"role": "user", "content": "Answer in JSON"}, {"role": "assistant", "content": "{\n  "}])
    out = build_messages_request(req)
    assert out["messages"][-1] == {"role": "assistant", "content": [{"type": "text", "text": "{"}]}


def test_empty_text_blocks_are_dropped() -> None:
    req = chat([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "   "}])
    out = build_messages_request(req)
    assert out["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_response_format_json_schema_instruction_or_native() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    req = chat([{"role": "system", "content": "S"}, {"role": "user", "content": "go"}], response_format=fmt)
    out = build_messages_request(req)
    # best effort by default: appended after the caller's system text so a cached prefix still hits
    assert out["system"][0] == {"type": "text", "text": "S"}
    assert '"properties":{"a":{"type":"integer"}}' in out["system"][1]["text"]
    assert "output_config" not in out
    native = build_messages_request(req, native_json_schema=True)
    assert native["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert native["system"] == [{"type": "text", "text": "S"}]
    json_object = build_messages_request(
        chat([{"role": "user", "content": "go"}], response_format={"type": "json_object"})
    )
    assert "JSON object" in json_object["system"][0]["text"]


@pytest.mark.parametrize(
    ("messages", "params", "param"),
    [
        ([{"role": "user", "content": "x"}], {"n": 2}, "n"),
        ([{"role": "system", "content": "only system"}], {}, "messages"),
        ([{"role": "function", "name": "f", "content": "x"}], {}, "messages.0.role"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}],
                }
            ],
            {},
            "messages.0.content.0.type",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}}],
                }
            ],
            {},
            "messages.0.content.0.image_url.url",
        ),
        ([{"role": "tool", "content": "x"}], {}, "messages.0.tool_call_id"),
        ([{"role": "user", "content": "x"}], {"tools": [{"type": "custom", "custom": {}}]}, "tools.0.type"),
    ],
)
def test_untranslatable_requests(messages: list[dict[str, Any]], params: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        build_messages_request(chat(messages, **params))
    assert info.value.param == param


def test_anthropic_request_survives_the_internal_shape() -> None:
    """An Anthropic client's request reaches an Anthropic upstream intact (cache breakpoints, thinking)."""
    original: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "system": [{"type": "text", "text": "Big prompt", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Read the file"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "I should call read", "signature": "c2ln"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "/a"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "data"}],
                        "is_error": True,
                        "cache_control": {"type": "ephemeral"},
                    },
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"},
                    },
                ],
            },
        ],
        "tools": [{"name": "read", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "stop_sequences": ["###"],
        "temperature": 1,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "abc"},
        "stream": True,
    }
    rebuilt = build_messages_request(parse_messages_request(original))
    assert rebuilt == original


def test_strip_extensions_for_openai_upstreams() -> None:
    req = parse_messages_request(
        {
            "model": "m",
            "max_tokens": 10,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": [{"name": "t", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "t", "signature": "s"},
                        {"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "boom", "is_error": True}],
                },
            ],
        }
    )
    plain = strip_anthropic_extensions(req)
    assert "anthropic" not in plain.params and "anthropic" in req.params  # the original is untouched
    assert plain.params["tools"] == [{"type": "function", "function": {"name": "t", "parameters": {"type": "object"}}}]
    assert plain.messages[0] == {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    assert "thinking_blocks" not in plain.messages[1]
    assert plain.messages[2] == {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: boom"}
