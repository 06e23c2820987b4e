"""OpenTelemetry traces end to end (docs/observability.md#opentelemetry): `margin serve` with
`tracing.enabled` exports over OTLP/HTTP to a real receiver on loopback, which decodes the protobuf.
A streamed, a failed-over and a cached request each leave a request span with a child per stage and
per upstream attempt; the client's traceparent is the request span's parent, and the upstream gets
a traceparent whose parent is the attempt's span. No key, token or prompt text is ever exported."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.failover_env import CIRCUIT, FAST, RETRY
from tests.support.otlp import Received, Span, otlp_receiver
from tests.support.processes import fake_upstream, gateway

UPSTREAM_KEY = "sk-upstream-" + secrets.token_hex(8)
OTLP_TOKEN = "Bearer otlp-" + secrets.token_hex(8)
CLIENT_KEY = "sk-client-" + secrets.token_hex(8)
PROMPT = "tell me about the quokka-" + secrets.token_hex(4)

SERVER, CLIENT = 2, 3  # span kinds in the OTLP protobuf
ERROR = 2  # status code


def deployment(name: str, base_url: str) -> str:
    return f"""  - name: {name}
    provider: openai_compat
    model: {name}
    base_url: {base_url}
    api_key: env:TRACE_TEST_UPSTREAM_KEY
    timeouts: {FAST}
    retry: {RETRY}
    circuit: {CIRCUIT}
    price: {{input: "1.25", output: "10"}}
"""


def config(upstream: str, receiver: str) -> str:
    return (
        f"""tracing:
  enabled: true
  endpoint: {receiver}/v1/traces
  service_name: margin-e2e
  schedule_delay_ms: 20
  headers: {{authorization: env:TRACE_TEST_OTLP_TOKEN}}
deployments:
"""
        + deployment("flaky", f"{upstream}/v1")
        + deployment("steady", f"{upstream}/v1")
        + deployment("recorded", f"{receiver}/v1")
        + """models:
  - name: chatty
    deployments: [flaky, steady]
  - name: plain
    deployments: [steady]
  - name: direct
    deployments: [recorded]
"""
    )


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[openai.OpenAI, Received, str]]:
    tmp: Path = tmp_path_factory.mktemp("otel")
    env = {"TRACE_TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TRACE_TEST_OTLP_TOKEN": OTLP_TOKEN}
    with (
        otlp_receiver() as (receiver, received),
        fake_upstream("--fault", "flaky=status=500") as upstream,
        gateway(config(upstream, receiver), tmp, env=env) as url,
    ):
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=CLIENT_KEY, max_retries=0)
        yield client, received, upstream


def traceparent() -> tuple[str, str, str]:
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent}-01", trace_id, parent


def finished(spans: list[Span]) -> bool:
    return any(s.name == "margin.record" for s in spans)


def request_span(spans: list[Span]) -> Span:
    [root] = [s for s in spans if s.kind == SERVER]
    return root


def check_tree(spans: list[Span], parent: str) -> Span:
    """One request span, child of the client's span; every other span its child, inside its time."""
    root = request_span(spans)
    assert root.parent_id == parent and root.service == "margin-e2e"
    for span in spans:
        if span is not root:
            assert span.parent_id == root.span_id, span
            assert root.start_ns <= span.start_ns <= span.end_ns <= root.end_ns + 50_000_000, span
    assert len({s.span_id for s in spans}) == len(spans)
    return root


def names(spans: list[Span]) -> list[str]:
    return sorted(s.name for s in spans)


def test_a_streamed_request_has_a_span_per_stage_and_the_genai_attributes(
    traced: tuple[openai.OpenAI, Received, str],
) -> None:
    client, received, upstream = traced
    header, trace_id, parent = traceparent()
    stream = client.chat.completions.create(
        model="plain", messages=[{"role": "user", "content": PROMPT}], stream=True,
        stream_options={"include_usage": True}, extra_headers={"traceparent": header},
    )  # fmt: skip
    usage = [chunk.usage for chunk in stream if chunk.usage is not None][-1]
    spans = received.wait(trace_id, finished)
    root = check_tree(spans, parent)
    assert names(spans) == sorted(
        ["chat plain", "margin.auth", "margin.route", "margin.limits", "margin.cache", "chat steady",
         "margin.meter", "margin.record"]
    )  # fmt: skip
    attrs = root.attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "plain" and attrs["gen_ai.response.model"] == "steady"
    assert attrs["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert attrs["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert attrs["margin.deployment"] == "steady" and attrs["margin.cache"] == "bypass"  # not deterministic
    expected = Decimal(usage.prompt_tokens) * Decimal("1.25") / 10**6 + Decimal(usage.completion_tokens) * 10 / 10**6
    assert Decimal(attrs["margin.cost_usd"]) == expected > 0
    assert attrs["gen_ai.usage.cost.amount"] == attrs["margin.cost_usd"]
    assert attrs["gen_ai.usage.cost.currency"] == "USD" and attrs["gen_ai.usage.cost.source"] == "margin.catalog"
    [attempt] = [s for s in spans if s.kind == CLIENT]
    port = int(upstream.rsplit(":", 1)[1])
    assert attempt.attributes["server.address"] == "127.0.0.1" and attempt.attributes["server.port"] == port
    assert attempt.attributes["gen_ai.provider.name"] == "openai" and attempt.attributes["margin.fallback"] is False
    assert attempt.attributes["margin.cost_usd"] == attrs["margin.cost_usd"]


def test_a_failed_over_request_has_a_span_per_attempt_with_its_error(
    traced: tuple[openai.OpenAI, Received, str],
) -> None:
    client, received, _ = traced
    header, trace_id, parent = traceparent()
    raw = client.chat.completions.with_raw_response.create(
        model="chatty", messages=[{"role": "user", "content": PROMPT}], extra_headers={"traceparent": header}
    )
    assert raw.headers["x-margin-deployment"] == "steady"
    spans = received.wait(trace_id, finished)
    root = check_tree(spans, parent)
    attempts = sorted((s for s in spans if s.kind == CLIENT), key=lambda s: s.attributes["margin.attempt"])
    assert len(attempts) == int(raw.headers["x-margin-attempts"]) >= 2
    *failed, answered = attempts
    for span in failed:
        assert span.name == "chat flaky" and span.status == ERROR
        assert span.attributes["error.type"] == "UpstreamServerError"
    assert answered.name == "chat steady" and answered.status != ERROR and "error.type" not in answered.attributes
    assert answered.attributes["margin.fallback"] is True and answered.attributes["margin.fallback_from"] == "flaky"
    assert root.status != ERROR and "error.type" not in root.attributes
    assert root.attributes["margin.cost_usd"] == raw.headers["x-margin-cost-usd"]  # exact, as the ledger has it
    assert [s.start_ns for s in attempts] == sorted(s.start_ns for s in attempts)


def test_a_cached_request_has_a_cache_span_and_no_upstream_attempt(
    traced: tuple[openai.OpenAI, Received, str],
) -> None:
    client, received, _ = traced
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT + " cached"}]
    client.chat.completions.create(model="plain", messages=messages, temperature=0)  # the miss stores it
    header, trace_id, parent = traceparent()
    raw = client.chat.completions.with_raw_response.create(
        model="plain", messages=messages, temperature=0, extra_headers={"traceparent": header}
    )
    assert raw.headers["x-margin-cache"] == "exact"
    spans = received.wait(trace_id, finished)
    root = check_tree(spans, parent)
    assert not [s for s in spans if s.kind == CLIENT] and "margin.meter" not in names(spans)
    assert "margin.cache" in names(spans)
    assert root.attributes["margin.cache"] == "hit" and Decimal(root.attributes["margin.cost_usd"]) == 0
    assert root.attributes["margin.cache.saved_usd"] == raw.headers["x-margin-saved-usd"]


def test_trace_context_goes_from_the_client_to_the_upstream(traced: tuple[openai.OpenAI, Received, str]) -> None:
    client, received, _ = traced
    header, trace_id, parent = traceparent()
    client.chat.completions.create(
        model="direct", messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"traceparent": header, "tracestate": "vendor=abc"},
    )  # fmt: skip
    sent = received.upstream_headers[-1]
    version, upstream_trace, upstream_parent, flags = sent["traceparent"].split("-")
    assert (version, upstream_trace, flags) == ("00", trace_id, "01")
    assert sent["tracestate"] == "vendor=abc"
    spans = received.wait(trace_id, finished)
    root = check_tree(spans, parent)
    [attempt] = [s for s in spans if s.kind == CLIENT]
    assert attempt.span_id == upstream_parent and attempt.parent_id == root.span_id  # the upstream's parent


def test_a_request_without_traceparent_starts_a_trace_of_its_own(traced: tuple[openai.OpenAI, Received, str]) -> None:
    client, received, _ = traced
    raw = client.chat.completions.with_raw_response.create(
        model="plain", messages=[{"role": "user", "content": PROMPT}]
    )
    request_id = raw.headers["x-request-id"]
    [root] = received.where("margin.request_id", request_id)
    assert root.kind == SERVER and root.parent_id == "" and len(root.trace_id) == 32 and int(root.trace_id, 16)
    spans = received.wait(root.trace_id, finished)
    assert check_tree(spans, "") == root and "chat steady" in names(spans)


def test_no_secret_or_prompt_is_exported(traced: tuple[openai.OpenAI, Received, str]) -> None:
    client, received, _ = traced
    header, trace_id, _ = traceparent()
    client.chat.completions.create(
        model="chatty", messages=[{"role": "user", "content": PROMPT}], extra_headers={"traceparent": header}
    )
    received.wait(trace_id, finished)
    assert received.bodies and all(h.get("authorization") == OTLP_TOKEN for h in received.export_headers)
    exported = b"".join(received.bodies)
    for secret in (UPSTREAM_KEY, OTLP_TOKEN.split()[1], CLIENT_KEY, PROMPT, "quokka"):
        assert secret.encode() not in exported
    assert os.environ.get("TRACE_TEST_UPSTREAM_KEY") is None  # handed to the gateway only
