"""A model group's stream buffer (`streaming.buffer_first_tokens`) against a real gateway and the fake
upstream: a cut inside the window restarts on a fallback that refuses prefill, invisibly; outside the
window the usual continuation or clean in-band error.

The fake answers PROMPT in 8 content events of 8 characters (about 2 counted tokens each);
`cut_after=3` drops the connection after the role event and 3 content events (about 6 tokens).
Each fallback here claims prefill but refuses it (`reject_prefill`), so a continuation attempt would
be visible as a refusal: only a restart from scratch gives a whole answer.
"""

from __future__ import annotations

import time
from decimal import Decimal

import anthropic
import httpx
import openai

from tests.e2e.failover_env import (
    DEADLINE_S,
    PROMPT,
    Dep,
    Group,
    Served,
    assert_clean_break,
    assert_complete,
    served_fixtures,
    stream,
)

REJECTS = Dep("capabilities: {prefill: true}", fault="reject_prefill")
WINDOW = "{buffer_first_tokens: 32}"  # longer than what the primary sends before its cut

DEPS = {
    "in-p": Dep(fault="cut_after=3"),
    "in-b": REJECTS,
    "out-p": Dep(fault="cut_after=3"),
    "out-b": REJECTS,
    "cont-p": Dep(fault="cut_after=3"),
    "cont-b": Dep("capabilities: {prefill: true}"),
    "all-p": Dep(fault="cut_after=3"),
    "all-b": Dep(fault="cut_after=2"),
    "sdk-p": Dep(fault="cut_after=3"),
    "sdk-b": REJECTS,
    "paced": Dep(fault="pace=0.1"),
}
GROUPS = {
    "in": Group(["in-p", "in-b"], streaming=WINDOW),
    "out": Group(["out-p", "out-b"], streaming="{buffer_first_tokens: 2}"),  # released after 1 content event
    "cont": Group(["cont-p", "cont-b"], streaming="{buffer_first_tokens: 2}"),
    "all": Group(["all-p", "all-b"], streaming=WINDOW),
    "sdk": Group(["sdk-p", "sdk-b"], streaming=WINDOW),
    "paced": Group(["paced"], streaming="{buffer_first_tokens: 4096, buffer_max_ms: 150}"),
}


served, healthy_afterwards = served_fixtures("failover-stream-buffer", DEPS, GROUPS)


def test_a_cut_inside_the_window_restarts_on_a_fallback_that_refuses_prefill(served: Served) -> None:
    answer = stream(served, "in", stream_options={"include_usage": True})
    assert_complete(answer)  # exactly PROMPT once: no error, no duplicated text, [DONE]
    assert set(answer.models) == {"in-b"}  # the client never saw a byte of the broken attempt
    assert sum(1 for e in answer.events for c in e.get("choices") or () if c["delta"].get("role")) == 1
    assert answer.headers["x-margin-deployment"] == "in-b"  # headers waited for the window
    assert answer.headers["x-margin-fallback"] == "true" and answer.headers["x-margin-fallback-from"] == "in-p"
    assert served.calls().get("in-p") == 1 and served.calls().get("in-b") == 1
    rows = served.ledger(answer.headers["x-request-id"], expected=2)
    assert [(r["deployment"], r["status"]) for r in rows] == [("in-p", "error"), ("in-b", "ok")]
    # The broken attempt is billed for what it generated although the client never saw it...
    assert rows[0]["output"] > 0 and Decimal(rows[0]["cost_total"]) > 0
    # ...and the fallback for its own report: the usage chunk the client got.
    usage = answer.events[-1]["usage"]
    assert rows[1]["output"] == usage["completion_tokens"] and rows[1]["usage_source"] == "reported"
    expected = (Decimal(usage["prompt_tokens"]) + 2 * Decimal(usage["completion_tokens"])) / 1_000_000
    assert Decimal(rows[1]["cost_total"]) == expected


def test_a_cut_outside_the_window_ends_in_a_clean_in_band_error(served: Served) -> None:
    answer = stream(served, "out")
    assert_clean_break(answer)  # an error event, a non-stop finish reason, no [DONE]
    assert answer.finish_reasons == ["error"]
    assert 0 < len(answer.text) < len(PROMPT) and PROMPT.startswith(answer.text)
    assert answer.headers["x-margin-deployment"] == "out-p"
    # Text was sent, so only a continuation could help: the fallback was asked, and refused it.
    assert served.calls().get("out-p") == 1 and served.calls().get("out-b") == 1


def test_a_cut_outside_the_window_is_continued_on_a_prefill_fallback(served: Served) -> None:
    answer = stream(served, "cont")
    assert_complete(answer)
    assert answer.models[0] == "cont-p" and answer.models[-1] == "cont-b"  # a continuation, not a restart


def test_a_cut_of_every_deployment_inside_the_window_is_a_plain_http_error(served: Served) -> None:
    answer = stream(served, "all")
    assert answer.status == 502 and not answer.done
    assert answer.events[0]["error"]["code"] == "stream_interrupted"
    rows = served.ledger(answer.headers["x-request-id"], expected=2)
    assert [(r["deployment"], r["status"]) for r in rows] == [("all-p", "error"), ("all-b", "error")]
    assert all(r["output"] > 0 for r in rows)  # each broken attempt billed for what it generated


def test_the_openai_sdk_reads_only_the_fallbacks_answer(served: Served) -> None:
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0, timeout=DEADLINE_S + 5)
    chunks = list(
        client.chat.completions.create(model="sdk", messages=[{"role": "user", "content": PROMPT}], stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == PROMPT
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert {c.model for c in chunks} == {"sdk-b"}


def test_the_anthropic_sdk_reads_only_the_fallbacks_answer(served: Served) -> None:
    client = anthropic.Anthropic(base_url=served.url, api_key="unused", max_retries=0, timeout=DEADLINE_S + 5)
    with client.messages.stream(model="sdk", max_tokens=200, messages=[{"role": "user", "content": PROMPT}]) as events:
        final = events.get_final_message()
    assert final.stop_reason == "end_turn"
    assert "".join(b.text for b in final.content if b.type == "text") == PROMPT


def test_the_time_limit_bounds_what_the_window_adds_to_the_first_token(served: Served) -> None:
    # 8 content events 100 ms apart: 4096 tokens alone would hold the whole answer (about 1 s).
    body = {"model": "paced", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
    started = time.monotonic()
    with httpx.stream("POST", f"{served.url}/v1/chat/completions", json=body, timeout=DEADLINE_S + 5) as r:
        lines = r.iter_lines()
        first_event = next(line for line in lines if line.startswith("data: "))
        first_at = time.monotonic() - started
        rest = [line for line in lines if line.startswith("data: ")]
    total = time.monotonic() - started
    assert first_event.startswith("data: {")
    assert rest[-1] == "data: [DONE]"
    assert first_at < total / 2, (first_at, total)
