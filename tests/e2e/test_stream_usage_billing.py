"""Issue 15 item 2: usage an upstream has reported is billed even when its stream breaks or the
client leaves; an estimate only fills the buckets the upstream had not reported yet, and the ledger
row names them (`estimated_buckets`).

Each streaming adapter is cut after each kind of event it receives and left by its client mid-answer;
each ledger cost is checked against a figure worked out by hand below.

Anthropic deployments (`ANTHROPIC_PRICE`: $3/M input, $3.75/M cache write, $0.30/M cache read, $15/M
output) answer with scripted usage: 1,500 input, 2,500 cache-write and 5,000 cache-read tokens in
`message_start` (with `output_tokens: 1`, as Anthropic sends it), 40 output tokens in `message_delta`.
The reported input alone costs 1500 * 3 + 2500 * 3.75 + 5000 * 0.3 = 4500 + 9375 + 1500 = 15375 $/M.

OpenAI-compatible deployments (`OPENAI_PRICE`: $1/M input, $2/M output) report usage only in their
last chunk: scripted 1,200 prompt and 30 completion tokens. Before it, margin estimates: the prompt is
20 tokens (56 bytes / 4 = 14, plus 3 for the message and 3 to prime the reply), the answer 1 token per
4 bytes of the text generated.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import urlsplit

import orjson
import pytest

from tests.e2e.failover_env import Served
from tests.e2e.stream_billing_env import (
    PIECES,
    PROMPT,
    PROMPT_ESTIMATE,
    Upstream,
    anthropic_client,
    serve,
    stream_chat,
    tokens,
    usd,
)

AN_USAGE = "usage_input=1500,usage_cache_write=2500,usage_cache_read=5000,usage_output=40"
OA_USAGE = "usage_input=1200,usage_output=30"
REPORTED_INPUT = Decimal(15375)  # $/M, see the module docstring
ANTHROPIC_CUTS = {
    # event the stream is cut after: (output tokens billed, buckets estimated)
    "message_start": (1, "output"),  # max(message_start's 1, 0 generated)
    "ping": (1, "output"),
    "content_block_start": (1, "output"),  # an empty text block: still nothing generated
    "content_block_delta": (tokens(PIECES[0]), "output"),  # "alpha b": 7 bytes = 2 tokens
    "content_block_stop": (tokens(PROMPT), "output"),  # the whole answer, 56 bytes = 14 tokens
    "message_delta": (40, ""),  # the cumulative output count arrived: nothing is estimated
}
DEPS = {
    **{f"an-cut-{event}": Upstream("anthropic", f"{AN_USAGE},cut_after_event={event}") for event in ANTHROPIC_CUTS},
    "an-whole": Upstream("anthropic", AN_USAGE),
    "an-slow": Upstream("anthropic", f"{AN_USAGE},pace=0.3"),
    "oa-cut-role": Upstream("openai_compat", f"{OA_USAGE},cut_after=0"),
    "oa-cut-content": Upstream("openai_compat", f"{OA_USAGE},cut_after=3"),
    "oa-cut-finish": Upstream("openai_compat", f"{OA_USAGE},cut_after=9"),
    "oa-cut-usage": Upstream("openai_compat", f"{OA_USAGE},cut_after=10"),
    "oa-whole": Upstream("openai_compat", OA_USAGE),
    "oa-slow": Upstream("openai_compat", f"{OA_USAGE},pace=0.3"),
    "oa-quiet": Upstream("openai_compat", "no_usage"),
}
GROUPS = {name: [name] for name in DEPS}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("stream-billing"), DEPS, GROUPS) as s:
        yield s


# --- Anthropic upstream ----------------------------------------------------------------------------


@pytest.mark.parametrize("event", list(ANTHROPIC_CUTS))
def test_an_anthropic_stream_cut_after_each_event_bills_the_reported_usage(served: Served, event: str) -> None:
    answer = stream_chat(served, f"an-cut-{event}")
    assert answer.error is not None  # a cut stream never ends like a complete one
    output, estimated = ANTHROPIC_CUTS[event]
    (row,) = served.ledger(answer.request_id, expected=1)
    assert (row["input_uncached"], row["input_cache_write"], row["input_cache_read"]) == (1500, 2500, 5000)
    assert row["output"] == output
    assert row["estimated_buckets"] == estimated
    assert row["usage_source"] == ("estimated" if estimated else "reported")
    assert Decimal(row["cost_total"]) == usd(REPORTED_INPUT + 15 * output)


def test_the_issue_figure_a_cut_after_message_start_costs_at_least_the_reported_input(served: Served) -> None:
    answer = stream_chat(served, "an-cut-message_start")
    (row,) = served.ledger(answer.request_id, expected=1)
    assert Decimal(row["cost_total"]) == Decimal("0.015390")  # 15375 + 15 * 1 $/M; it used to be $0.00009


def test_a_whole_anthropic_stream_bills_the_reported_usage(served: Served) -> None:
    answer = stream_chat(served, "an-whole", include_usage=True)
    assert answer.error is None and answer.text == PROMPT
    (row,) = served.ledger(answer.request_id, expected=1)
    assert (row["usage_source"], row["estimated_buckets"], row["output"]) == ("reported", "", 40)
    assert Decimal(row["cost_total"]) == usd(REPORTED_INPUT + 15 * 40) == Decimal("0.015975")


def test_a_client_that_leaves_an_anthropic_stream_is_billed_the_reported_input(served: Served) -> None:
    request_id = _leave_after_first_text(served, "an-slow")
    (row,) = served.ledger(request_id, expected=1)
    assert row["status"] == "cancelled"
    assert (row["input_uncached"], row["input_cache_write"], row["input_cache_read"]) == (1500, 2500, 5000)
    # One delta of 0.3 s pacing had arrived: "alpha b" = 2 tokens, estimated.
    assert (row["output"], row["estimated_buckets"]) == (tokens(PIECES[0]), "output")
    assert Decimal(row["cost_total"]) == usd(REPORTED_INPUT + 15 * 2) == Decimal("0.015405")


def test_message_start_on_v1_messages_carries_the_upstreams_input_usage(served: Served) -> None:
    client = anthropic_client(served)
    with client.messages.create(
        model="an-whole", max_tokens=64, messages=[{"role": "user", "content": PROMPT}], stream=True
    ) as events:
        first = next(iter(events))
        assert first.type == "message_start"
        usage = first.message.usage
        assert (usage.input_tokens, usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (
            1500,
            2500,
            5000,
        )
        rest = list(events)
    delta = next(e for e in rest if e.type == "message_delta")
    assert delta.usage.output_tokens == 40


def test_message_start_on_v1_messages_estimates_the_input_of_an_openai_upstream(served: Served) -> None:
    """An OpenAI-shaped upstream reports usage only at the end: message_start carries the prompt
    estimate (documented), message_delta the reported figures."""
    client = anthropic_client(served)
    with client.messages.create(
        model="oa-whole", max_tokens=64, messages=[{"role": "user", "content": PROMPT}], stream=True
    ) as events:
        first = next(iter(events))
        assert first.type == "message_start"
        assert first.message.usage.input_tokens > 0
        rest = list(events)
    delta = next(e for e in rest if e.type == "message_delta")
    assert delta.usage.input_tokens == 1200 and delta.usage.output_tokens == 30


# --- OpenAI-compatible upstream --------------------------------------------------------------------


def test_an_openai_stream_cut_after_the_role_chunk_bills_the_prompt(served: Served) -> None:
    answer = stream_chat(served, "oa-cut-role")
    assert answer.error is not None
    (row,) = served.ledger(answer.request_id, expected=1)
    # The upstream had begun answering, so it read the prompt: billed as estimated, with no output.
    assert (row["input_uncached"], row["output"], row["estimated_buckets"]) == (20, 0, "input_uncached,output")
    assert Decimal(row["cost_total"]) == usd(Decimal(20 * 1)) == Decimal("0.00002")


def test_an_openai_stream_cut_mid_answer_bills_an_estimate_of_what_was_generated(served: Served) -> None:
    answer = stream_chat(served, "oa-cut-content")
    assert answer.error is not None and answer.finish_reasons == ["error"]
    generated = "".join(PIECES[:3])  # "alpha beta gamma delt": 21 bytes = 6 tokens
    assert answer.text == generated
    (row,) = served.ledger(answer.request_id, expected=1)
    assert (row["input_uncached"], row["output"]) == (PROMPT_ESTIMATE, tokens(generated)) == (20, 6)
    assert (row["usage_source"], row["estimated_buckets"]) == ("estimated", "input_uncached,output")
    assert Decimal(row["cost_total"]) == usd(Decimal(20 * 1 + 6 * 2)) == Decimal("0.000032")


def test_an_openai_stream_cut_after_its_finish_reason_is_complete(served: Served) -> None:
    answer = stream_chat(served, "oa-cut-finish", include_usage=True)
    assert answer.error is None  # the answer was whole: only the usage report was lost
    assert answer.text == PROMPT and answer.finish_reasons == ["stop"]
    usage = answer.chunks[-1].usage
    assert usage is not None and usage.model_extra == {"margin_estimated": True}
    (row,) = served.ledger(answer.request_id, expected=1)
    assert (row["status"], row["input_uncached"], row["output"]) == ("ok", 20, 14)
    assert Decimal(row["cost_total"]) == usd(Decimal(20 * 1 + 14 * 2)) == Decimal("0.000048")


def test_an_openai_stream_cut_after_its_usage_chunk_bills_the_report(served: Served) -> None:
    answer = stream_chat(served, "oa-cut-usage", include_usage=True)
    assert answer.error is None and answer.text == PROMPT
    usage = answer.chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (1200, 30)
    assert not usage.model_extra  # reported, so not marked as an estimate
    (row,) = served.ledger(answer.request_id, expected=1)
    assert (row["usage_source"], row["estimated_buckets"]) == ("reported", "")
    assert Decimal(row["cost_total"]) == usd(Decimal(1200 * 1 + 30 * 2)) == Decimal("0.00126")


def test_a_client_that_leaves_an_openai_stream_is_billed_an_estimate(served: Served) -> None:
    request_id = _leave_after_first_text(served, "oa-slow")
    (row,) = served.ledger(request_id, expected=1)
    assert row["status"] == "cancelled"
    assert (row["input_uncached"], row["output"], row["estimated_buckets"]) == (20, 2, "input_uncached,output")
    assert Decimal(row["cost_total"]) == usd(Decimal(20 * 1 + 2 * 2)) == Decimal("0.000024")


def test_a_synthesised_usage_chunk_is_marked_as_an_estimate(served: Served) -> None:
    answer = stream_chat(served, "oa-quiet", include_usage=True)
    assert answer.error is None and answer.text == PROMPT
    usage = answer.chunks[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (20, 14)
    assert usage.model_extra == {"margin_estimated": True}


# --- helpers -------------------------------------------------------------------------------------


def _leave_after_first_text(served: Served, model: str) -> str:
    """Stream over a raw socket and close it as soon as the first text arrives; the request id."""
    address = urlsplit(served.url)
    body = orjson.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": PROMPT}]})
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: {address.netloc}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    received = b""
    with socket.create_connection((address.hostname or "127.0.0.1", address.port or 80), timeout=10) as sock:
        sock.sendall(request)
        deadline = time.monotonic() + 10
        while b'"content":"a' not in received and time.monotonic() < deadline:
            received += sock.recv(65536)
    head = received.split(b"\r\n\r\n", 1)[0].decode()
    return next(line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("x-request-id"))
