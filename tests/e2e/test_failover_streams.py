"""Streaming integrity: breaks before and after visible content, stalls, junk events, missing [DONE],
prefill continuations (and a fallback that refuses them), client disconnects.

The fake upstream echoes the prompt in 8 content events, so a complete answer is exactly PROMPT.
"""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import pytest

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

PREFILL = "capabilities: {prefill: true}"

DEPS = {
    "cut-p": Dep(fault="cut_after=3"),
    "cut-b": Dep(PREFILL + '\nprice: {input: "0.5", output: "1"}'),
    "cutnp-p": Dep(fault="cut_after=3"),
    "cutnp-b": Dep(),
    "early-p": Dep(fault="cut_after=0"),
    "early-b": Dep(),
    "stall-p": Dep(fault="stall_after=2,stall=3"),
    "stall-b": Dep(PREFILL),
    "close-p": Dep(fault="stall_after=2,stall=0.1"),
    "garbage-p": Dep(fault="garbage_at=3"),
    "nodone": Dep(fault="no_done,hold=10"),
    "nodone-quiet": Dep(fault="no_done,no_usage,hold=10"),
    "reject-p": Dep(fault="cut_after=3"),
    "reject-b": Dep(PREFILL, fault="reject_prefill"),
    "slow-p": Dep(fault="pace=0.2"),
}
GROUPS = {
    "cut": Group(["cut-p", "cut-b"]),
    "cutnp": Group(["cutnp-p", "cutnp-b"]),
    "early": Group(["early-p", "early-b"]),
    "stall": Group(["stall-p", "stall-b"]),
    "close": Group(["close-p"]),
    "garbage": Group(["garbage-p"]),
    "nodone": Group(["nodone"]),
    "nodone-quiet": Group(["nodone-quiet"]),
    "reject": Group(["reject-p", "reject-b"]),
    "slow": Group(["slow-p"]),
}


served, healthy_afterwards = served_fixtures("failover-streams", DEPS, GROUPS)


def test_a_stream_cut_after_visible_text_is_continued_on_a_prefill_fallback(served: Served) -> None:
    answer = stream(served, "cut", stream_options={"include_usage": True})
    assert_complete(answer)  # the client reads one whole answer: the fallback continued the text
    assert answer.headers["x-margin-deployment"] == "cut-p"  # headers went out with the first chunk
    assert answer.models[0] == "cut-p" and answer.models[-1] == "cut-b"  # each chunk names its author
    assert answer.elapsed < 1.5
    assert served.calls().get("cut-p") == 1 and served.calls().get("cut-b") == 1
    rows = served.ledger(answer.headers["x-request-id"], expected=2)
    assert [(r["deployment"], r["status"]) for r in rows] == [("cut-p", "error"), ("cut-b", "ok")]
    # The broken attempt is billed for the text it generated, at its own price, as an estimate...
    assert rows[0]["output"] > 0 and rows[0]["usage_source"] == "estimated"
    # ...and the continuation for its own report only: the usage chunk the client got.
    usage = answer.events[-1]["usage"]
    assert rows[1]["output"] == usage["completion_tokens"]
    expected = (Decimal(usage["prompt_tokens"]) * Decimal("0.5") + Decimal(usage["completion_tokens"])) / 1_000_000
    assert Decimal(rows[1]["cost_total"]) == expected


def test_a_cut_stream_without_a_prefill_fallback_ends_in_a_clean_error(served: Served) -> None:
    answer = stream(served, "cutnp")
    assert_clean_break(answer)
    assert answer.finish_reasons == ["error"]
    assert answer.error is not None and answer.error["code"] == "stream_interrupted"
    assert 0 < len(answer.text) < len(PROMPT)
    assert served.calls().get("cutnp-p") == 1 and "cutnp-b" not in served.calls()  # no blind restart


def test_a_break_before_any_visible_text_restarts_on_the_fallback(served: Served) -> None:
    answer = stream(served, "early")  # only the role chunk went out before the cut
    assert_complete(answer)
    assert served.calls().get("early-p") == 1 and served.calls().get("early-b") == 1


def test_a_stall_mid_stream_is_an_idle_timeout_then_a_continuation(served: Served) -> None:
    answer = stream(served, "stall")
    assert_complete(answer)
    assert 0.5 <= answer.elapsed < 1.5  # idle timeout 0.5 s, not the upstream's 3 s stall
    assert served.calls().get("stall-p") == 1 and served.calls().get("stall-b") == 1


def test_a_stream_that_stalls_then_closes_without_finishing_is_a_clean_error(served: Served) -> None:
    answer = stream(served, "close")
    assert_clean_break(answer)
    assert answer.elapsed < 1.0
    assert served.calls().get("close-p") == 1


def test_a_malformed_event_mid_stream_is_an_interruption(served: Served) -> None:
    """Nothing tells a gateway what an unparseable event carried: the answer may have a hole in it,
    so it is never presented as complete (issue 15 item 1; tests/e2e/test_stream_corruption.py)."""
    answer = stream(served, "garbage")
    assert_clean_break(answer)  # every event the client got parsed (checked by `stream`)
    assert served.calls().get("garbage-p") == 1


@pytest.mark.parametrize("model", ["nodone", "nodone-quiet"])
def test_a_finished_stream_without_done_is_final_at_once(served: Served, model: str) -> None:
    answer = stream(served, model, stream_options={"include_usage": True})
    assert_complete(answer)  # margin ends it with its own [DONE]
    assert answer.events[-1]["usage"]["completion_tokens"] > 0
    assert answer.elapsed < 1.5  # not the 10 s the upstream holds the connection open
    assert served.calls().get(model) == 1


def test_a_fallback_that_rejects_prefill_ends_in_a_clean_error(served: Served) -> None:
    answer = stream(served, "reject")
    assert_clean_break(answer)
    assert answer.elapsed < DEADLINE_S
    assert served.calls().get("reject-p") == 1 and served.calls().get("reject-b") == 1
    rows = served.ledger(answer.headers["x-request-id"], expected=2)
    assert [(r["deployment"], r["status"]) for r in rows] == [("reject-p", "error"), ("reject-b", "error")]
    assert rows[1]["output"] == 0 and Decimal(rows[1]["cost_total"]) == 0


def test_a_client_disconnect_cancels_the_upstream_without_leaks(served: Served) -> None:
    baseline = served.admin()["runtime"]["tasks"]
    request_ids = []
    for _ in range(3):
        with httpx.stream("POST", f"{served.url}/v1/chat/completions", json=_slow_body()) as r:
            request_ids.append(r.headers["x-request-id"])
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
    for request_id in request_ids:
        (row,) = served.ledger(request_id, expected=1)
        # Stopped early: metered from what was generated, never the upstream's (unsent) final report.
        assert row["status"] == "cancelled" and row["usage_source"] == "estimated"
    deadline = time.monotonic() + 3
    while served.admin()["runtime"]["tasks"] > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.admin()["runtime"]["tasks"] <= baseline
    assert served.admin()["runtime"]["draining"] == 0


def _slow_body() -> dict[str, object]:
    return {"model": "slow", "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
