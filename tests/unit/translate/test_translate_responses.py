"""Non-streamed answers both ways, usage buckets and error shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic.types
import openai.types.chat
import pytest

from margin.errors import (
    BudgetExceeded,
    CapacityExceeded,
    ContextLengthExceeded,
    InvalidRequest,
    MarginError,
    PayloadTooLarge,
    RateLimited,
    UpstreamAuth,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamModelGone,
    UpstreamOverloaded,
    UpstreamRateLimit,
    UpstreamServerError,
    UpstreamTimeout,
)
from margin.translate import (
    anthropic_error_body,
    chat_result_to_message,
    error_from_anthropic,
    message_to_chat_result,
    usage_from_anthropic,
    usage_to_anthropic,
)
from margin.types import ChatResult, Usage

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_anthropic_tool_use_message_to_chat_completion() -> None:
    result = message_to_chat_result(load("anthropic_message_tool_use.json"), created=1700000000)
    completion = openai.types.chat.ChatCompletion.model_validate(result.body)  # a valid OpenAI body
    assert completion.id == "msg_01Aq9w938a90dw8q"
    assert completion.created == 1700000000
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll check the current weather in San Francisco for you."
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id == "toolu_01A09q90qw90lq917835lq9"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"location": "San Francisco, CA", "unit": "celsius"}  # type: ignore[union-attr]
    assert result.model == "claude-opus-4-6"


def test_usage_with_cache_tokens() -> None:
    result = message_to_chat_result(load("anthropic_message_tool_use.json"))
    assert result.usage == Usage(input_uncached=50, input_cache_write=248, input_cache_read=100000, output=503)
    assert result.body["usage"] == {
        "prompt_tokens": 100298,
        "completion_tokens": 503,
        "total_tokens": 100801,
        "prompt_tokens_details": {"cached_tokens": 100000},
    }


def test_usage_thinking_tokens_stay_output() -> None:
    # Anthropic bills thinking as output; margin.metering counts it the same way.
    usage = usage_from_anthropic(
        {"input_tokens": 10, "output_tokens": 100, "output_tokens_details": {"thinking_tokens": 70}}
    )
    assert (usage.output, usage.output_reasoning, usage.input_uncached) == (100, 0, 10)


def test_usage_to_anthropic_round_trip() -> None:
    usage = Usage(input_uncached=7, input_cache_read=1000, input_cache_write=30, output=12, output_reasoning=8)
    assert usage_to_anthropic(usage) == {
        "input_tokens": 7,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 1000,
        "output_tokens": 20,
    }
    back = usage_from_anthropic(usage_to_anthropic(usage))
    assert back.input_total == usage.input_total and back.output_total == usage.output_total


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_stop_reason_mapping(stop: str, finish: str) -> None:
    body = {
        "id": "msg_1",
        "model": "m",
        "content": [{"type": "text", "text": "x"}],
        "stop_reason": stop,
        "usage": {},
    }
    assert message_to_chat_result(body).body["choices"][0]["finish_reason"] == finish


def test_thinking_message_keeps_signed_blocks() -> None:
    blocks = [
        {"type": "thinking", "thinking": "Let me add.", "signature": "sig"},
        {"type": "text", "text": "4"},
    ]
    body = {
        "id": "msg_2",
        "model": "m",
        "content": blocks,
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1, "output_tokens": 2},
    }
    message = message_to_chat_result(body).body["choices"][0]["message"]
    assert message["content"] == "4"
    assert message["reasoning_content"] == "Let me add."
    assert message["thinking_blocks"] == [blocks[0]]


def test_missing_usage_is_none_for_the_meter() -> None:
    body = {"id": "msg_3", "model": "m", "content": [], "stop_reason": "end_turn"}
    result = message_to_chat_result(body)
    assert result.usage is None and "usage" not in result.body


def _openai_result(message: dict[str, Any], finish: str, usage: Usage | None) -> ChatResult:
    body = {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163},
    }
    return ChatResult(body=body, usage=usage, model="gpt-4o-2024-08-06")


def test_chat_result_text_to_anthropic_message() -> None:
    result = _openai_result(
        {"role": "assistant", "content": "Hello! How can I help?", "refusal": None},
        "stop",
        Usage(input_uncached=20, input_cache_read=100, output=9),
    )
    message = chat_result_to_message(result, model="claude-alias")
    parsed = anthropic.types.Message.model_validate(message)  # a valid Anthropic Message
    assert parsed.id == "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG"
    assert parsed.model == "claude-alias"
    assert parsed.stop_reason == "end_turn"
    assert message["content"] == [{"type": "text", "text": "Hello! How can I help?"}]
    assert message["usage"] == {
        "input_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 100,
        "output_tokens": 9,
    }


def test_chat_result_tool_calls_to_tool_use() -> None:
    call = {
        "id": "call_abc",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    result = _openai_result({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls", None)
    message = chat_result_to_message(result)
    anthropic.types.Message.model_validate(message)
    assert message["stop_reason"] == "tool_use"
    assert message["content"] == [
        {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    # no Usage object: the body's usage is used rather than reporting zero
    assert message["usage"]["input_tokens"] == 1117 and message["usage"]["output_tokens"] == 46


@pytest.mark.parametrize(
    ("finish", "stop"), [("length", "max_tokens"), ("content_filter", "refusal"), (None, "end_turn")]
)
def test_finish_reason_to_stop_reason(finish: str | None, stop: str) -> None:
    result = _openai_result({"role": "assistant", "content": "x"}, finish, Usage())  # type: ignore[arg-type]
    assert chat_result_to_message(result)["stop_reason"] == stop


def test_reasoning_content_becomes_unsigned_thinking() -> None:
    result = _openai_result({"role": "assistant", "content": "42", "reasoning_content": "6*7"}, "stop", Usage())
    assert chat_result_to_message(result)["content"] == [
        {"type": "thinking", "thinking": "6*7", "signature": ""},
        {"type": "text", "text": "42"},
    ]


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (InvalidRequest("bad"), "invalid_request_error"),
        (PayloadTooLarge("big"), "request_too_large"),
        (BudgetExceeded("spent"), "billing_error"),
        (RateLimited("slow down"), "rate_limit_error"),
        (CapacityExceeded("full"), "overloaded_error"),
        (UpstreamTimeout("late"), "timeout_error"),
        (UpstreamServerError("boom"), "api_error"),
        (MarginError("oops"), "api_error"),
    ],
)
def test_anthropic_error_body(err: MarginError, kind: str) -> None:
    body = anthropic_error_body(err, request_id="req_018EeWyXxfu5pfWkrYcMdjWG")
    assert body == {
        "type": "error",
        "error": {"type": kind, "message": err.message},
        "request_id": "req_018EeWyXxfu5pfWkrYcMdjWG",
    }


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (
            400,
            {"type": "error", "error": {"type": "invalid_request_error", "message": "messages: bad"}},
            UpstreamBadRequest,
        ),
        (
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "prompt is too long: 210000 tokens > 200000 maximum",
                },
            },
            ContextLengthExceeded,
        ),
        (
            401,
            {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}},
            UpstreamAuth,
        ),
        (
            404,
            {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-9"}},
            UpstreamModelGone,
        ),
        (
            429,
            {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "Number of request tokens has exceeded"},
            },
            UpstreamRateLimit,
        ),
        (
            500,
            {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}},
            UpstreamServerError,
        ),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            UpstreamOverloaded,
        ),
        (529, "<html>bad gateway</html>", UpstreamOverloaded),
        (502, None, UpstreamServerError),
        (409, {}, UpstreamBadRequest),
        (None, {"type": "error", "error": {"type": "brand_new_error", "message": "?"}}, UpstreamServerError),
    ],
)
def test_error_from_anthropic(status: int | None, body: object, cls: type[UpstreamError]) -> None:
    err = error_from_anthropic(status, body, deployment="claude-eu")
    assert type(err) is cls
    assert err.deployment == "claude-eu"
    assert err.message.startswith("Anthropic upstream")
