"""Contract: the openai_compat adapter against recorded answers of OpenAI, vLLM, llama.cpp and Ollama.

Every answer is replayed byte for byte by a real HTTP server on loopback (replay_upstream.py); the
assertions pin what the adapter hands the pipeline: result bodies, usage buckets, chunk sequences,
error classes with their retry/failover flags, and the exact request it sent upstream.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from tests.contract.providers.replay_upstream import (
    ProviderFactory,
    ReplayServer,
    Reply,
    chat,
    collect,
    data_events,
    json_reply,
    recording,
    sse_bytes,
    sse_reply,
)

from margin import errors
from margin.types import ChatRequest, EmbeddingRequest, Usage

# --- non-streamed chat --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "usage"),
    [
        ("openai_chat_cached.json", Usage(input_uncached=86, input_cache_read=1920, output=300)),
        ("openai_chat_reasoning.json", Usage(input_uncached=75, output=162, output_reasoning=1024)),
        ("openai_chat_tool_calls.json", Usage(input_uncached=82, output=17)),
        ("openai_chat_logprobs.json", Usage(input_uncached=9, output=9)),
        ("vllm_chat.json", Usage(input_uncached=42, output=10)),  # prompt_tokens_details: null
        ("llamacpp_chat.json", Usage(input_uncached=237, output=10)),
        ("ollama_chat.json", Usage(input_uncached=26, output=10)),
    ],
)
async def test_chat_returns_the_upstream_body_its_usage_and_model(
    replay: ReplayServer, make_provider: ProviderFactory, fixture: str, usage: Usage
) -> None:
    sid = replay.script(json_reply(fixture))
    result = await make_provider(replay.url(sid)).chat(chat())
    expected = recording(fixture)["body"]
    assert result.body == expected  # forwarded untouched: vendor extras (timings, stop_reason...) survive
    assert result.usage == usage
    assert result.usage is not None and result.usage.total == expected["usage"]["total_tokens"]
    assert result.model == expected["model"]
    assert [s.path for s in replay.seen(sid)] == ["/chat/completions"]


async def test_chat_without_usage_reports_none_and_falls_back_to_the_deployment_model(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    body = recording("ollama_chat.json")["body"]
    del body["usage"], body["model"]
    sid = replay.script(Reply(body=orjson.dumps(body), headers={"content-type": "application/json"}))
    result = await make_provider(replay.url(sid), model="llama3.2:3b").chat(chat())
    assert result.usage is None  # the meter estimates instead
    assert result.model == "llama3.2:3b"
    assert result.body["choices"][0]["message"]["content"] == "Hello! How can I assist you today?"


async def test_chat_tool_call_and_logprobs_survive_verbatim(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(json_reply("openai_chat_tool_calls.json"), json_reply("openai_chat_logprobs.json"))
    provider = make_provider(replay.url(sid))
    tools = await provider.chat(chat())
    call = tools.body["choices"][0]["message"]["tool_calls"][0]
    assert tools.body["choices"][0]["finish_reason"] == "tool_calls"
    assert orjson.loads(call["function"]["arguments"]) == {"location": "Boston, MA"}
    logprobs = await provider.chat(chat({"logprobs": True, "top_logprobs": 2}))
    content = logprobs.body["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in content] == ["Hello", "!"]
    assert content[0]["top_logprobs"][1] == {"token": "Hi", "logprob": -1.3190403, "bytes": [72, 105]}


# --- streamed chat ------------------------------------------------------------------------------


def _text(chunks: list[Any]) -> str:
    return "".join((c.body["choices"][0]["delta"].get("content") or "") for c in chunks if c.body.get("choices"))


@pytest.mark.parametrize(
    ("fixture", "text"),
    [
        ("openai_chat_stream.sse", "Hello! How can I assist you today?"),
        ("ollama_chat_stream.sse", "Hello! How can I assist you today?"),
    ],
)
async def test_stream_without_usage_chunk_yields_every_event_in_order_and_no_usage(
    replay: ReplayServer, make_provider: ProviderFactory, fixture: str, text: str
) -> None:
    sid = replay.script(sse_reply(fixture))
    chunks = await collect(make_provider(replay.url(sid)).stream(chat()))
    assert [c.body for c in chunks] == data_events(sse_bytes(fixture))
    assert all(c.usage is None for c in chunks)
    assert _text(chunks) == text
    assert chunks[-1].body["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("fixture", "usage"),
    [
        ("openai_chat_stream_usage.sse", Usage(input_uncached=19, output=10)),
        ("ollama_chat_stream_usage.sse", Usage(input_uncached=26, output=10)),
        ("llamacpp_chat_stream_usage.sse", Usage(input_uncached=14, output=9)),
    ],
)
async def test_stream_usage_is_captured_on_the_final_usage_chunk_only(
    replay: ReplayServer, make_provider: ProviderFactory, fixture: str, usage: Usage
) -> None:
    sid = replay.script(sse_reply(fixture))
    chunks = await collect(make_provider(replay.url(sid)).stream(chat()))
    assert len(chunks) == len(data_events(sse_bytes(fixture)))
    assert chunks[-1].body["choices"] == []
    assert chunks[-1].usage == usage
    assert [c.usage for c in chunks[:-1]] == [None] * (len(chunks) - 1)  # `"usage": null` reads as no usage


async def test_llamacpp_timings_ride_along_on_the_usage_chunk(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(sse_reply("llamacpp_chat_stream_usage.sse"))
    chunks = await collect(make_provider(replay.url(sid)).stream(chat()))
    last = chunks[-1]
    assert last.body["timings"]["predicted_n"] == 9 and last.body["timings"]["prompt_n"] == 14
    assert not any("timings" in c.body for c in chunks[:-1])


async def test_llamacpp_older_builds_put_usage_on_the_finish_chunk(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(sse_reply("llamacpp_chat_stream_final_usage.sse"))
    chunks = await collect(make_provider(replay.url(sid)).stream(chat()))
    finishing = [c for c in chunks if c.body["choices"] and c.body["choices"][0]["finish_reason"]]
    assert len(finishing) == 1 and finishing[0] is chunks[-1]
    assert chunks[-1].usage == Usage(input_uncached=14, output=9)
    assert sum(c.usage is not None for c in chunks) == 1


async def test_vllm_continuous_usage_stats_put_a_running_count_on_every_chunk(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(sse_reply("vllm_chat_stream_continuous_usage.sse"))
    chunks = await collect(
        make_provider(replay.url(sid)).stream(chat({"stream_options": {"continuous_usage_stats": True}}))
    )
    assert all(c.usage is not None for c in chunks)
    outputs = [c.usage.output for c in chunks if c.usage is not None]
    assert outputs == sorted(outputs) and outputs[0] == 0  # cumulative, never a delta
    assert chunks[-1].usage == Usage(input_uncached=42, output=8)  # the last one is the answer's total
    assert chunks[-1].body["choices"] == []
    assert chunks[-2].body["choices"][0]["stop_reason"] is None  # vLLM's extra field is forwarded
    # the client's vLLM option survives next to the usage flag margin adds
    assert replay.seen(sid)[0].body["stream_options"] == {
        "continuous_usage_stats": True,
        "include_usage": True,
    }


async def test_tool_call_deltas_reassemble_into_both_parallel_calls(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(sse_reply("openai_chat_stream_tool_calls.sse"))
    chunks = await collect(make_provider(replay.url(sid)).stream(chat({"tools": [{"type": "function"}]})))
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk.body["choices"][0]["delta"].get("tool_calls") or []:
            call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.get("id", "")
            call["name"] += delta.get("function", {}).get("name", "")
            call["arguments"] += delta.get("function", {}).get("arguments", "")
    assert {i: (c["id"], c["name"], orjson.loads(c["arguments"])) for i, c in calls.items()} == {
        0: ("call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", {"location": "Paris, France"}),
        1: ("call_ABq9xgfLhG1fDyxNHGRvx5ZC", "get_weather", {"location": "Bogotá, Colombia"}),
    }
    assert chunks[-1].body["choices"][0]["finish_reason"] == "tool_calls"


async def test_streamed_logprobs_are_forwarded_per_chunk(replay: ReplayServer, make_provider: ProviderFactory) -> None:
    sid = replay.script(sse_reply("openai_chat_stream_logprobs.sse"))
    chunks = await collect(make_provider(replay.url(sid)).stream(chat({"logprobs": True, "top_logprobs": 1})))
    tokens = [
        t for c in chunks if c.body["choices"][0]["logprobs"] for t in c.body["choices"][0]["logprobs"]["content"]
    ]
    assert [(t["token"], t["logprob"]) for t in tokens] == [("Hello", -0.0009), ("!", -0.021)]
    assert replay.seen(sid)[0].body["top_logprobs"] == 1


async def test_stream_split_into_tiny_tcp_writes_parses_the_same(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(sse_reply("openai_chat_stream_tool_calls.sse", fragment=7))
    chunks = await collect(make_provider(replay.url(sid)).stream(chat()))
    assert [c.body for c in chunks] == data_events(sse_bytes("openai_chat_stream_tool_calls.sse"))


# --- legacy completions and embeddings ----------------------------------------------------------


def _completion(prompt: str = "Say this is a test", **params: Any) -> ChatRequest:
    return ChatRequest(model="instruct", messages=[], params=params, kind="completion", prompt=prompt)


async def test_legacy_completion_goes_to_completions_with_a_prompt(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(json_reply("openai_completion.json"))
    provider = make_provider(replay.url(sid), model="gpt-3.5-turbo-instruct")
    assert provider.native_completions is True
    result = await provider.chat(_completion(max_tokens=7, echo=False))
    seen = replay.seen(sid)[0]
    assert seen.path == "/completions"
    assert seen.body == {
        "max_tokens": 7,
        "echo": False,
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "Say this is a test",
    }
    assert result.body["choices"][0]["text"] == "\n\nThis is indeed a test"
    assert result.usage == Usage(input_uncached=5, output=7)


async def test_legacy_completion_stream(replay: ReplayServer, make_provider: ProviderFactory) -> None:
    sid = replay.script(sse_reply("openai_completion_stream.sse"))
    chunks = await collect(make_provider(replay.url(sid)).stream(_completion()))
    assert "".join(c.body["choices"][0]["text"] for c in chunks) == "\n\nThis is indeed a test"
    assert chunks[-1].body["choices"][0]["finish_reason"] == "length"
    assert replay.seen(sid)[0].body["stream"] is True and "messages" not in replay.seen(sid)[0].body


@pytest.mark.parametrize(
    ("fixture", "usage"),
    [
        ("openai_embeddings.json", Usage(input_uncached=8)),
        ("ollama_embeddings.json", Usage(input_uncached=6)),
    ],
)
async def test_embeddings(replay: ReplayServer, make_provider: ProviderFactory, fixture: str, usage: Usage) -> None:
    sid = replay.script(json_reply(fixture))
    request = EmbeddingRequest(
        model="text-embedding", inputs=["a", "b"], params={"dimensions": 4, "encoding_format": "float"}
    )
    result = await make_provider(replay.url(sid), model="embed-served").embed(request)
    seen = replay.seen(sid)[0]
    assert seen.path == "/embeddings"
    assert seen.body == {
        "dimensions": 4,
        "encoding_format": "float",
        "model": "embed-served",
        "input": ["a", "b"],
    }
    assert result.body == recording(fixture)["body"]
    assert result.usage == usage
    assert result.model == recording(fixture)["body"]["model"]


# --- upstream errors ----------------------------------------------------------------------------

ERROR_CASES = [
    # fixture, class, retryable, failover, retry_after
    ("openai_error_context_length.json", errors.ContextLengthExceeded, False, True, None),
    ("openai_error_rate_limit.json", errors.UpstreamRateLimit, True, True, 2.0),
    ("openai_error_content_filter.json", errors.ContentFiltered, False, False, None),
    ("openai_error_invalid_api_key.json", errors.UpstreamAuth, False, True, None),
    ("openai_error_model_not_found.json", errors.UpstreamModelGone, False, True, None),
    ("openai_error_server.json", errors.UpstreamServerError, True, True, None),
    ("openai_error_overloaded.json", errors.UpstreamOverloaded, True, True, None),
    ("vllm_error_context_length.json", errors.ContextLengthExceeded, False, True, None),
    ("vllm_error_bad_request.json", errors.UpstreamBadRequest, False, False, None),
    ("vllm_error_model_not_found.json", errors.UpstreamModelGone, False, True, None),
    ("llamacpp_error_loading.json", errors.UpstreamOverloaded, True, True, None),
    ("ollama_error_model_not_found.json", errors.UpstreamModelGone, False, True, None),
    ("ollama_error_plain.json", errors.UpstreamServerError, True, True, None),
    ("anthropic_error_overloaded.json", errors.UpstreamOverloaded, True, True, None),
]


@pytest.mark.parametrize(("fixture", "cls", "retryable", "failover", "retry_after"), ERROR_CASES)
async def test_error_bodies_map_to_the_right_class(
    replay: ReplayServer,
    make_provider: ProviderFactory,
    fixture: str,
    cls: type[errors.UpstreamError],
    retryable: bool,
    failover: bool,
    retry_after: float | None,
) -> None:
    sid = replay.script(json_reply(fixture))
    with pytest.raises(errors.UpstreamError) as caught:
        await make_provider(replay.url(sid)).chat(chat())
    error = caught.value
    assert type(error) is cls
    assert (error.retryable, error.failover, error.retry_after) == (retryable, failover, retry_after)
    assert error.deployment == "upstream-a"
    body = recording(fixture)["body"]
    upstream_message = body["error"]["message"] if isinstance(body.get("error"), dict) else body.get("error") or ""
    # The upstream's own words reach the logs, with anything key-shaped redacted (issue 16, item 4).
    assert errors.redact_secrets(upstream_message)[:60] in error.message


@pytest.mark.parametrize(
    ("fixture", "cls"),
    [
        ("openai_error_rate_limit.json", errors.UpstreamRateLimit),
        ("vllm_error_context_length.json", errors.ContextLengthExceeded),
        ("anthropic_error_overloaded.json", errors.UpstreamOverloaded),
    ],
)
async def test_stream_errors_surface_on_the_first_pull_before_any_chunk(
    replay: ReplayServer, make_provider: ProviderFactory, fixture: str, cls: type[errors.UpstreamError]
) -> None:
    sid = replay.script(json_reply(fixture))
    stream = make_provider(replay.url(sid)).stream(chat())
    with pytest.raises(cls):
        await anext(stream)  # failover can still happen invisibly: nothing was sent to the client


@pytest.mark.parametrize("fixture", ["llamacpp_error_context_size.json", "tgi_error_validation.json"])
async def test_self_hosted_context_overflow_is_context_length_exceeded(
    replay: ReplayServer, make_provider: ProviderFactory, fixture: str
) -> None:
    sid = replay.script(json_reply(fixture))
    with pytest.raises(errors.UpstreamError) as caught:
        await make_provider(replay.url(sid)).chat(chat())
    assert type(caught.value) is errors.ContextLengthExceeded


async def test_openai_insufficient_quota_is_not_retried(replay: ReplayServer, make_provider: ProviderFactory) -> None:
    sid = replay.script(json_reply("openai_error_insufficient_quota.json"))
    with pytest.raises(errors.UpstreamError) as caught:
        await make_provider(replay.url(sid)).chat(chat())
    assert caught.value.failover is True
    assert caught.value.retryable is False


# --- the request the adapter sends --------------------------------------------------------------


async def test_authorization_carries_the_resolved_env_key_and_the_model_is_rewritten(
    replay: ReplayServer, make_provider: ProviderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTRACT_UPSTREAM_KEY", "sk-contract-7f3a")
    sid = replay.script(json_reply("openai_chat_cached.json"))
    provider = make_provider(
        replay.url(sid),
        model="gpt-4o-2024-08-06",
        api_key="env:CONTRACT_UPSTREAM_KEY",
        headers={"OpenAI-Organization": "org-abc123"},
    )
    await provider.chat(chat())
    seen = replay.seen(sid)[0]
    assert seen.headers["Authorization"] == "Bearer sk-contract-7f3a"
    assert seen.headers["OpenAI-Organization"] == "org-abc123"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.body["model"] == "gpt-4o-2024-08-06"  # never the client-facing name
    assert seen.body["messages"] == [{"role": "user", "content": "Hello!"}]
    assert seen.method == "POST"


async def test_no_key_means_no_authorization_header(replay: ReplayServer, make_provider: ProviderFactory) -> None:
    sid = replay.script(json_reply("ollama_chat.json"))
    await make_provider(replay.url(sid), api_key="env:CONTRACT_KEY_THAT_IS_NOT_SET").chat(chat())
    assert "Authorization" not in replay.seen(sid)[0].headers


@pytest.mark.parametrize("supported", [True, False])
async def test_stream_options_include_usage_only_when_the_upstream_accepts_it(
    replay: ReplayServer, make_provider: ProviderFactory, supported: bool
) -> None:
    sid = replay.script(sse_reply("ollama_chat_stream.sse"))
    provider = make_provider(replay.url(sid), capabilities={"stream_options": supported})
    await collect(provider.stream(chat({"stream_options": {"include_usage": False}})))
    body = replay.seen(sid)[0].body
    assert body["stream"] is True
    if supported:
        assert body["stream_options"] == {"include_usage": True}  # always metered from the upstream's count
    else:
        assert "stream_options" not in body  # old servers 400 on the unknown field


async def test_non_streamed_requests_never_carry_stream_fields(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    sid = replay.script(json_reply("vllm_chat.json"))
    await make_provider(replay.url(sid)).chat(chat({"stream": True, "stream_options": {"include_usage": True}}))
    body = replay.seen(sid)[0].body
    assert "stream" not in body and "stream_options" not in body


@pytest.mark.parametrize("supported", [True, False])
async def test_parallel_tool_calls_is_dropped_only_when_unsupported(
    replay: ReplayServer, make_provider: ProviderFactory, supported: bool
) -> None:
    sid = replay.script(json_reply("openai_chat_tool_calls.json"))
    provider = make_provider(replay.url(sid), capabilities={"parallel_tool_calls": supported})
    await provider.chat(
        chat({"tools": [{"type": "function", "function": {"name": "f"}}], "parallel_tool_calls": False})
    )
    body = replay.seen(sid)[0].body
    assert ("parallel_tool_calls" in body) is supported
    assert body["tools"] == [{"type": "function", "function": {"name": "f"}}]


async def test_unknown_client_fields_are_forwarded_verbatim(
    replay: ReplayServer, make_provider: ProviderFactory
) -> None:
    extras: dict[str, Any] = {
        "top_k": 20,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "chat_template_kwargs": {"enable_thinking": False},
        "guided_json": {"type": "object", "properties": {"x": {"type": "integer"}}},
        "cache_prompt": True,
        "n_probs": 3,
        "mirostat": 0,
        "unicode": "naïve ✓",
        "nested_null": {"a": None, "b": [1, 2.5, "3"]},
    }
    sid = replay.script(sse_reply("vllm_chat_stream_continuous_usage.sse"))
    await collect(make_provider(replay.url(sid)).stream(chat(dict(extras))))
    body = replay.seen(sid)[0].body
    assert {k: body[k] for k in extras} == extras
    assert set(body) == {*extras, "model", "messages", "stream", "stream_options"}


async def test_request_params_are_not_mutated(replay: ReplayServer, make_provider: ProviderFactory) -> None:
    params: dict[str, Any] = {"stream_options": {"continuous_usage_stats": True}, "parallel_tool_calls": True}
    sid = replay.script(sse_reply("ollama_chat_stream.sse"))
    await collect(make_provider(replay.url(sid), capabilities={"parallel_tool_calls": False}).stream(chat(params)))
    assert params == {"stream_options": {"continuous_usage_stats": True}, "parallel_tool_calls": True}
