"""Usage normalisation: disjoint buckets, defensive reading, stream merging, estimates."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from margin.metering import (
    AnthropicStreamUsage,
    anthropic_cache_write_1h,
    anthropic_usage,
    estimate_message_tokens,
    estimate_text_tokens,
    estimate_tokens,
    gemini_usage,
    llamacpp_timings,
    llamacpp_usage,
    ollama_timings,
    openai_usage,
    usage_from_payload,
)
from margin.metering._numbers import MAX_TOKENS, count
from margin.types import Usage


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (12, 12),
        (12.0, 12),
        ("12", 12),
        (" 7 ", 7),
        (None, 0),
        (True, 0),
        (-3, 0),
        (1.5, 0),
        (float("nan"), 0),
        (float("inf"), 0),
        ("abc", 0),
        ("-4", 0),
        ([3], 0),
        ({"n": 3}, 0),
        (MAX_TOKENS + 1, 0),
    ],
)
def test_count_reads_garbage_as_zero(raw: Any, expected: int) -> None:
    assert count(raw) == expected


def test_openai_usage_buckets_are_disjoint_and_sum_to_the_reported_totals() -> None:
    usage = openai_usage(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 400,
            "prompt_tokens_details": {"cached_tokens": 600, "audio_tokens": 100},
            "completion_tokens_details": {"reasoning_tokens": 150, "audio_tokens": 50},
        }
    )
    assert usage == Usage(
        input_uncached=300,
        input_cache_read=600,
        input_audio=100,
        output=200,
        output_reasoning=150,
        output_audio=50,
    )
    assert usage.input_total == 1000
    assert usage.output_total == 400


def test_openai_usage_derives_prompt_from_total_when_prompt_is_missing() -> None:
    assert openai_usage({"completion_tokens": 10, "total_tokens": 25}) == Usage(input_uncached=15, output=10)


def test_openai_usage_clamps_reasoning_above_completion() -> None:
    usage = openai_usage(
        {"prompt_tokens": 5, "completion_tokens": 10, "completion_tokens_details": {"reasoning_tokens": 99}}
    )
    assert usage == Usage(input_uncached=5, output_reasoning=10)


def test_openai_usage_recognises_responses_shape() -> None:
    usage = openai_usage({"input_tokens": 50, "input_tokens_details": {"cached_tokens": 20}, "output_tokens": 9})
    assert usage == Usage(input_uncached=30, input_cache_read=20, output=9)


@pytest.mark.parametrize("payload", [None, [], "usage", 42, {"usage": None}, {"prompt_tokens": {"x": 1}}])
def test_openai_usage_of_nonsense_is_empty(payload: Any) -> None:
    assert usage_from_payload(payload, "openai") == Usage()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=30), children, max_size=6),
    max_leaves=20,
)
usage_keys = st.sampled_from(
    [
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
        "timings",
        "usage",
        "promptTokenCount",
        "eval_count",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    payload=st.dictionaries(usage_keys, json_values, max_size=8),
    dialect=st.sampled_from(
        ["openai", "openai_responses", "vllm", "llamacpp", "llamacpp_native", "ollama", "anthropic", "gemini"]
    ),
)
def test_no_payload_makes_a_normaliser_raise_or_go_negative(payload: dict[str, Any], dialect: Any) -> None:
    usage = usage_from_payload(payload, dialect)
    buckets = [
        usage.input_uncached,
        usage.input_cache_read,
        usage.input_cache_write,
        usage.output,
        usage.output_reasoning,
    ]
    assert all(isinstance(value, int) and value >= 0 for value in buckets)
    assert usage.source == "reported"


def test_anthropic_input_tokens_are_uncached() -> None:
    usage = anthropic_usage(
        {
            "input_tokens": 10,
            "cache_creation_input_tokens": 20,
            "cache_read_input_tokens": 30,
            "output_tokens": 4,
        }
    )
    assert usage == Usage(input_uncached=10, input_cache_write=20, input_cache_read=30, output=4)
    assert usage.input_total == 60


def test_anthropic_stream_usage_is_available_mid_stream() -> None:
    merged = AnthropicStreamUsage()
    merged.feed({"type": "message_start", "message": {"usage": {"input_tokens": 40, "output_tokens": 1}}})
    merged.feed({"type": "content_block_delta", "delta": {"text": "hi"}})
    # A client that disconnects now is still charged the input and the first output token.
    assert merged.usage() == Usage(input_uncached=40, output=1)
    merged.feed({"type": "message_delta", "usage": {"output_tokens": 20}})
    merged.feed({"type": "message_delta", "usage": {"output_tokens": 35}})  # cumulative, not added
    assert merged.usage() == Usage(input_uncached=40, output=35)


def test_anthropic_stream_ignores_null_fields_and_garbage_events() -> None:
    merged = AnthropicStreamUsage()
    for event in (
        None,
        "x",
        {"type": "message_start", "message": None},
        {"type": "message_delta", "usage": None},
    ):
        merged.feed(event)
    merged.feed({"type": "message_start", "message": {"usage": {"input_tokens": 7, "cache_read_input_tokens": 3}}})
    merged.feed({"type": "message_delta", "usage": {"input_tokens": None, "output_tokens": 2}})
    assert merged.usage() == Usage(input_uncached=7, input_cache_read=3, output=2)


def test_anthropic_cache_write_1h_split_is_capped_by_the_write_total() -> None:
    usage = {"cache_creation_input_tokens": 100, "cache_creation": {"ephemeral_1h_input_tokens": 500}}
    assert anthropic_cache_write_1h(usage) == 100
    merged = AnthropicStreamUsage()
    merged.feed(
        {
            "type": "message_start",
            "message": {
                "usage": {
                    "cache_creation_input_tokens": 80,
                    "cache_creation": {"ephemeral_1h_input_tokens": 30},
                }
            },
        }
    )
    assert merged.cache_write_1h() == 30


def test_gemini_thoughts_are_reasoning_and_cached_content_is_inside_the_prompt() -> None:
    usage = gemini_usage(
        {
            "promptTokenCount": 100,
            "cachedContentTokenCount": 60,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 9,
        }
    )
    assert usage == Usage(input_uncached=40, input_cache_read=60, output=5, output_reasoning=9)


def test_llamacpp_without_timings_is_plain_openai() -> None:
    assert llamacpp_usage({"usage": {"prompt_tokens": 3, "completion_tokens": 4}}) == Usage(input_uncached=3, output=4)


def test_server_timings_give_throughput() -> None:
    timings = llamacpp_timings(
        {"timings": {"prompt_n": 100, "prompt_ms": 50.0, "predicted_n": 30, "predicted_ms": 600.0}}
    )
    assert timings.prompt_tokens_per_second == pytest.approx(2000.0)
    assert timings.output_tokens_per_second == pytest.approx(50.0)
    ollama = ollama_timings({"prompt_eval_count": 26, "prompt_eval_duration": 130_000_000, "eval_count": 0})
    assert ollama.prompt_tokens_per_second == pytest.approx(200.0)
    assert ollama.output_tokens_per_second is None


def test_estimate_text_tokens_is_ceil_of_utf8_bytes_over_four() -> None:
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("abcd") == 1
    assert estimate_text_tokens("abcde") == 2
    assert estimate_text_tokens("é") == 1  # 2 bytes
    assert estimate_text_tokens("日本語") == 3  # 9 bytes


def test_estimate_messages_uses_cookbook_overheads() -> None:
    messages = [
        {"role": "system", "content": "You are terse."},  # role 2 + content 4
        {"role": "user", "name": "bob", "content": "Hi"},  # role 1 + name 1 (+1) + content 1
    ]
    # 3 reply priming + 2 x 3 per message + 6 + 4
    assert estimate_message_tokens(messages) == 3 + 6 + 6 + 4


def test_estimate_counts_image_parts_and_structured_fields() -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
        },
    ]
    assert estimate_message_tokens(messages) > 3 + 6 + 85 + 4


def test_estimate_tokens_marks_usage_estimated() -> None:
    usage = estimate_tokens("a" * 40, completion="b" * 9)
    assert usage == Usage(input_uncached=10, output=3, source="estimated")
    chat = estimate_tokens([{"role": "user", "content": "a" * 8}])
    assert chat.input_uncached == 3 + 3 + 1 + 2
    assert chat.source == "estimated"
