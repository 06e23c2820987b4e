"""/v1/messages request bodies -> ChatRequest, and the validation errors clients get."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from margin.errors import InvalidRequest
from margin.translate import build_messages_request, parse_messages_request, strip_anthropic_extensions

BASE: dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 1024}


def body(**fields: Any) -> dict[str, Any]:
    return {**BASE, **fields}


def test_plain_text_request() -> None:
    req = parse_messages_request(body(messages=[{"role": "user", "content": "Hello, Claude"}]))
    assert req.model == "claude-sonnet-4-5"
    assert req.messages == [{"role": "user", "content": "Hello, Claude"}]
    assert req.params == {"max_tokens": 1024, "anthropic": {}}  # the marker of an Anthropic-shaped request
    assert req.max_output_tokens == 1024
    assert req.stream is False and req.include_usage is False


def test_system_string_and_blocks_with_cache_control() -> None:
    req = parse_messages_request(body(system="Be terse.", messages=[{"role": "user", "content": "Hi"}]))
    assert req.messages[0] == {"role": "system", "content": "Be terse."}

    system = [
        {"type": "text", "text": "You are a librarian."},
        {"type": "text", "text": "<the whole book>", "cache_control": {"type": "ephemeral"}},
    ]
    req = parse_messages_request(body(system=system, messages=[{"role": "user", "content": "Hi"}]))
    assert req.messages[0] == {
        "role": "system",
        "content": [
            {"type": "text", "text": "You are a librarian."},
            {"type": "text", "text": "<the whole book>", "cache_control": {"type": "ephemeral"}},
        ],
    }


def test_multi_turn_and_text_blocks_collapse_to_string() -> None:
    messages = [
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": "Hi, I'm Claude. How can I help you?"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Explain LLMs"}, {"type": "text", "text": "briefly"}],
        },
    ]
    req = parse_messages_request(body(messages=messages))
    assert [m["role"] for m in req.messages] == ["user", "assistant", "user"]
    assert req.messages[2]["content"] == "Explain LLMs\nbriefly"


def test_sampling_stop_metadata_and_stream() -> None:
    req = parse_messages_request(
        body(
            messages=[{"role": "user", "content": "Count"}],
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            stop_sequences=["\n\nHuman:", "STOP"],
            metadata={"user_id": "u-42"},
            stream=True,
        )
    )
    assert req.params == {
        "anthropic": {},
        "max_tokens": 1024,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["\n\nHuman:", "STOP"],
        "user": "u-42",
    }
    # usage must come back so that message_delta can report it
    assert req.stream is True and req.include_usage is True


def test_prefill_trailing_assistant_is_kept() -> None:
    messages = [
        {"role": "user", "content": "What's the Greek name for Sun? (A) Sol (B) Helios (C) Sun"},
        {"role": "assistant", "content": "The best answer is ("},
    ]
    req = parse_messages_request(body(messages=messages))
    assert req.messages[-1] == {"role": "assistant", "content": "The best answer is ("}


def test_images_base64_and_url() -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "Compare these."},
    ]
    req = parse_messages_request(body(messages=[{"role": "user", "content": content}]))
    assert req.messages[0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "Compare these."},
    ]


def test_pdf_document_becomes_file_part() -> None:
    doc = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
    }
    req = parse_messages_request(body(messages=[{"role": "user", "content": [doc]}]))
    assert req.messages[0]["content"] == [
        {
            "type": "file",
            "file": {"filename": "document.pdf", "file_data": "data:application/pdf;base64,JVBERi0x"},
        }
    ]


def test_tool_use_round_trip_history() -> None:
    tools = [
        {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
            },
        }
    ]
    messages = [
        {"role": "user", "content": "What's the weather like in San Francisco?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "I'll check."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"location": "SF"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "15 degrees"},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    req = parse_messages_request(
        body(tools=tools, tool_choice={"type": "any", "disable_parallel_tool_use": True}, messages=messages)
    )
    assert req.params["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "parameters": tools[0]["input_schema"],
            },
        }
    ]
    assert req.params["tool_choice"] == "required"
    assert req.params["parallel_tool_calls"] is False
    assistant, tool, user = req.messages[1:]
    assert assistant == {
        "role": "assistant",
        "content": "I'll check.",
        "tool_calls": [
            {
                "id": "toolu_01A",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location":"SF"}'},
            }
        ],
    }
    # tool results must directly follow the assistant's tool_calls in OpenAI's shape
    assert tool == {"role": "tool", "tool_call_id": "toolu_01A", "content": "15 degrees"}
    assert user == {"role": "user", "content": "And tomorrow?"}


def test_tool_result_error_blocks_and_cache_control() -> None:
    result = {
        "type": "tool_result",
        "tool_use_id": "toolu_9",
        "is_error": True,
        "content": [{"type": "text", "text": "ENOENT"}],
        "cache_control": {"type": "ephemeral"},
    }
    req = parse_messages_request(body(messages=[{"role": "user", "content": [result]}]))
    assert req.messages == [
        {
            "role": "tool",
            "tool_call_id": "toolu_9",
            "content": "ENOENT",
            "is_error": True,
            "cache_control": {"type": "ephemeral"},
        }
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "any"}, "required"),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_mapping(choice: dict[str, Any], expected: object) -> None:
    req = parse_messages_request(body(messages=[{"role": "user", "content": "x"}], tool_choice=choice))
    assert req.params["tool_choice"] == expected
    assert "parallel_tool_calls" not in req.params


def test_thinking_blocks_and_anthropic_only_fields_are_kept() -> None:
    thinking = {"type": "thinking", "thinking": "Let me think", "signature": "sig=="}
    messages = [
        {"role": "user", "content": "Solve"},
        {"role": "assistant", "content": [thinking, {"type": "redacted_thinking", "data": "opaque"}]},
        {"role": "user", "content": "Go on"},
    ]
    req = parse_messages_request(
        body(messages=messages, thinking={"type": "enabled", "budget_tokens": 2048}, service_tier="auto")
    )
    assert req.messages[1]["thinking_blocks"] == [thinking, {"type": "redacted_thinking", "data": "opaque"}]
    assert req.messages[1]["content"] == ""
    assert req.params["anthropic"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "service_tier": "auto",
    }


def test_output_config_format_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    req = parse_messages_request(
        body(
            messages=[{"role": "user", "content": "x"}],
            output_config={"format": {"type": "json_schema", "schema": schema}, "effort": "low"},
        )
    )
    assert req.params["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert req.params["anthropic"] == {"output_config": {"effort": "low"}}


def test_first_message_may_be_assistant() -> None:
    # Anthropic no longer requires a leading user turn; margin does not either.
    req = parse_messages_request(body(messages=[{"role": "assistant", "content": "Earlier answer"}]))
    assert req.messages == [{"role": "assistant", "content": "Earlier answer"}]


@pytest.mark.parametrize(
    ("fields", "param", "fragment"),
    [
        (
            {"max_tokens": None, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
            "field required",
        ),
        (
            {"max_tokens": "10", "messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
            "expected an integer",
        ),
        (
            {"max_tokens": True, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens",
            "expected an integer",
        ),
        ({"max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "max_tokens", "at least 1"),
        ({"model": "", "messages": [{"role": "user", "content": "x"}]}, "model", "must not be empty"),
        ({"messages": []}, "messages", "at least one message"),
        ({"messages": "hello"}, "messages", "expected an array"),
        ({"messages": [{"role": "human", "content": "x"}]}, "messages.0.role", "expected one of user"),
        (
            {"messages": [{"role": "user", "content": ""}, {"role": "user", "content": "x"}]},
            "messages.0.content",
            "",
        ),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content", "expected an array"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]},
            "messages.0.content.0.type",
            "expected one of text, image, document, tool_result",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b", "input": {}}]}]},
            "messages.0.content.0.type",
            "got 'tool_use'",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages.0.content.0.text",
            "expected a string, got null",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": 3}]}]},
            "messages.0.content.0.tool_use_id",
            "expected a string",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {"type": "base64", "media_type": "image/bmp", "data": "x"},
                            }
                        ],
                    }
                ]
            },
            "messages.0.content.0.source.media_type",
            "image/jpeg",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "temperature": 1.5},
            "temperature",
            "between 0 and 1",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "stop_sequences": "STOP"},
            "stop_sequences",
            "array",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "all"}},
            "tool_choice.type",
            "",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "w"}],
            },
            "tools.0.type",
            "server tool",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [{"name": "t"}]},
            "tools.0.input_schema",
            "",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream", "expected a boolean"),
    ],
)
def test_invalid_requests_name_the_field(fields: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_messages_request(body(**fields))
    assert info.value.param == param
    assert info.value.message.startswith(f"{param}: ")
    assert fragment in info.value.message
    assert info.value.status == 400


def test_non_object_body() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_messages_request(["not", "an", "object"])
    assert info.value.param == "body"


# --- property: any JSON body raises InvalidRequest or parses ------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=8,
)
strings = st.text(max_size=6)
schema = st.just({"type": "object"}) | json_values
source = st.fixed_dictionaries(
    {"type": st.sampled_from(["base64", "url", "text", "file"])},
    optional={
        "media_type": st.sampled_from(["image/png", "image/bmp", "application/pdf"]) | json_values,
        "data": strings | json_values,
        "url": strings,
    },
)
inner_blocks = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "bogus"])},
    optional={"text": strings | json_values, "source": source},
)
blocks = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["text", "image", "document", "tool_result", "tool_use", "thinking", "redacted_thinking", "bogus"]
        )
    },
    optional={
        "text": strings | json_values,
        "source": source | json_values,
        "tool_use_id": strings | json_values,
        "content": strings | st.lists(inner_blocks, max_size=2) | json_values,
        "id": strings | json_values,
        "name": strings | json_values,
        "input": st.dictionaries(strings, strings, max_size=2) | json_values,
        "cache_control": st.just({"type": "ephemeral"}) | json_values,
        "is_error": st.booleans() | json_values,
        "thinking": strings,
        "signature": strings,
        "data": strings,
        "title": strings | json_values,
    },
)
message_list = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "assistant", "system"]),
            "content": st.text(min_size=1, max_size=6) | st.lists(blocks, min_size=1, max_size=3),
        },
    ),
    min_size=1,
    max_size=3,
)
tools = st.lists(
    st.fixed_dictionaries(
        {"name": strings, "input_schema": schema},
        optional={
            "type": st.sampled_from(["custom", "bash_20250124"]),
            "description": strings,
            "strict": json_values,
        },
    ),
    max_size=2,
)
tool_choice = st.fixed_dictionaries(
    {"type": st.sampled_from(["auto", "any", "tool", "none", "all"])},
    optional={"name": strings | json_values, "disable_parallel_tool_use": st.booleans() | json_values},
)
# Mostly-valid bodies, so that the property reaches the deep branches and not only the first check.
near_valid = st.fixed_dictionaries(
    {"model": st.just("m"), "max_tokens": st.integers(0, 10), "messages": message_list},
    optional={
        "system": strings | st.lists(inner_blocks, max_size=2) | json_values,
        "tools": tools | json_values,
        "tool_choice": tool_choice | json_values,
        "temperature": st.floats(allow_nan=True) | json_values,
        "top_k": st.integers(-1, 5) | json_values,
        "stop_sequences": st.lists(strings | json_values, max_size=2) | json_values,
        "metadata": st.fixed_dictionaries({}, optional={"user_id": strings | json_values}) | json_values,
        "output_config": st.fixed_dictionaries({}, optional={"format": json_values, "effort": strings}) | json_values,
        "stream": st.booleans(),
    },
)
noisy = st.fixed_dictionaries(
    {"model": st.just("m") | json_values, "max_tokens": st.integers(-2, 10) | json_values},
    optional={"messages": json_values | st.lists(json_values, max_size=2), "stream": json_values},
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values, noisy, near_valid, near_valid))
def test_random_bodies_raise_only_invalid_request(candidate: object) -> None:
    try:
        req = parse_messages_request(candidate)
    except InvalidRequest as err:
        assert err.param  # always says what to fix
        return
    # whatever parsed is JSON-serialisable, as the pipeline will forward it
    json.dumps(req.messages)
    json.dumps(req.params)
    # and either upstream translation accepts it or says why, without crashing
    strip_anthropic_extensions(req)
    try:
        json.dumps(build_messages_request(req))
    except InvalidRequest as err:
        assert err.param


@pytest.mark.parametrize("value", [10**400, float("nan"), float("inf"), -0.5])
def test_out_of_range_numbers_are_invalid_not_crashes(value: float) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_messages_request(body(messages=[{"role": "user", "content": "x"}], temperature=value))
    assert info.value.param == "temperature"
