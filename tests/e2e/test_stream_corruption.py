"""Issue 15 item 1: a corrupted upstream answer is never presented as a complete one.

An upstream that sends one event that is not valid JSON, then carries on and finishes cleanly, has
lost whatever that event carried. margin treats the stream as interrupted: continued on a
prefill-capable fallback like a cut stream, otherwise ended with `finish_reason: "error"` and the
in-band error (no `[DONE]`). A 200 answer whose body is not JSON is a clean 502 that fails over. Each
malformed payload is counted per deployment in `margin_upstream_malformed_events_total`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from tests.e2e.failover_env import Served, assert_clean_break, stream
from tests.e2e.stream_billing_env import (
    PIECES,
    PREFILL,
    PROMPT,
    PROMPT_ESTIMATE,
    Upstream,
    anthropic_client,
    openai_client,
    serve,
    stream_chat,
    tokens,
    usd,
)

DEPS = {
    "mal-solo": Upstream("openai_compat", "malformed_at=3"),  # event 3 = the third content piece
    "mal-p": Upstream("openai_compat", "malformed_at=3"),
    "mal-b": Upstream("openai_compat", extra=PREFILL),
    "an-mal": Upstream("anthropic", "malformed_at=4"),  # message_start, ping, block start, delta 1, delta 2
    "body-p": Upstream("openai_compat", "malformed_body"),
    "body-b": Upstream("openai_compat"),
    "an-body": Upstream("anthropic", "malformed_body"),
}
GROUPS = {
    "mal-solo": ["mal-solo"],
    "mal": ["mal-p", "mal-b"],
    "an-mal": ["an-mal"],
    "body": ["body-p", "body-b"],
    "an-body": ["an-body"],
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("stream-corruption"), DEPS, GROUPS) as s:
        yield s


def malformed_count(served: Served, deployment: str) -> float:
    metrics = httpx.get(f"{served.url}/metrics").text
    found = re.search(rf'^margin_upstream_malformed_events_total{{deployment="{deployment}"}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_malformed_event_ends_the_stream_with_an_error_not_a_complete_answer(served: Served) -> None:
    answer = stream_chat(served, "mal-solo")
    assert answer.error is not None  # the in-band error the SDK raises
    assert answer.finish_reasons == ["error"]  # never "stop" on an answer with a hole in it
    assert answer.text == PIECES[0] + PIECES[1]  # what came before the malformed event, nothing after
    (row,) = served.ledger(answer.request_id, expected=1)
    assert (row["status"], row["error_class"]) == ("error", "MalformedUpstreamEvent")
    # Billed for what it generated, estimated: 20 prompt tokens at $1/M, "alpha beta gam" = 4 at $2/M.
    assert (row["input_uncached"], row["output"]) == (PROMPT_ESTIMATE, tokens("alpha beta gam")) == (20, 4)
    assert Decimal(row["cost_total"]) == usd(Decimal(20 * 1 + 4 * 2)) == Decimal("0.000028")
    assert malformed_count(served, "mal-solo") >= 1


def test_the_raw_stream_has_no_done_after_a_malformed_event(served: Served) -> None:
    answer = stream(served, "mal-solo")
    assert_clean_break(answer)


def test_a_malformed_event_is_continued_on_a_prefill_fallback(served: Served) -> None:
    answer = stream_chat(served, "mal", include_usage=True)
    assert answer.error is None
    assert answer.text == PROMPT and answer.finish_reasons == ["stop"]  # whole: the fallback continued it
    rows = served.ledger(answer.request_id, expected=2)
    assert [(r["deployment"], r["status"], r["error_class"]) for r in rows] == [
        ("mal-p", "error", "MalformedUpstreamEvent"),
        ("mal-b", "ok", None),
    ]


def test_an_anthropic_malformed_event_is_an_interrupted_stream(served: Served) -> None:
    answer = stream_chat(served, "an-mal")
    assert answer.error is not None and answer.finish_reasons == ["error"]
    assert answer.text == PIECES[0]
    (row,) = served.ledger(answer.request_id, expected=1)
    assert row["error_class"] == "MalformedUpstreamEvent"
    assert malformed_count(served, "an-mal") >= 1


def test_an_anthropic_malformed_event_on_v1_messages_ends_with_an_error_event(served: Served) -> None:
    client = anthropic_client(served)
    seen: list[str] = []
    manager = client.messages.stream(model="an-mal", max_tokens=64, messages=[{"role": "user", "content": PROMPT}])
    with pytest.raises(anthropic.APIStatusError) as caught, manager as events:  # the request starts here
        for event in events:
            seen.append(event.type)
    assert "message_stop" not in seen and "message_delta" not in seen
    assert "cut off" in str(caught.value)


def test_a_malformed_body_is_a_502_that_fails_over(served: Served) -> None:
    client = openai_client(served)
    completion = client.chat.completions.with_raw_response.create(
        model="body", messages=[{"role": "user", "content": PROMPT}]
    )
    assert completion.parse().choices[0].message.content == PROMPT
    rows = served.ledger(completion.headers["x-request-id"], expected=2)
    assert [(r["deployment"], r["error_class"]) for r in rows] == [
        ("body-p", "MalformedUpstreamResponse"),
        ("body-b", None),
    ]
    assert malformed_count(served, "body-p") >= 1


def test_a_malformed_anthropic_body_without_a_fallback_is_a_clean_502(served: Served) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(served).chat.completions.create(model="an-body", messages=[{"role": "user", "content": PROMPT}])
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_malformed_response"  # type: ignore[index]
