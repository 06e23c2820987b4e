"""Failover on upstream errors and silences, through a real gateway in front of the scripted fake.

Each scenario asserts: the call ends within its deadline, the answer is complete or a clean error,
calls per deployment are bounded (the fake counts them), and the gateway is healthy afterwards.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.e2e.failover_env import (
    DEADLINE_S,
    PROMPT,
    Dep,
    Group,
    Served,
    assert_complete,
    chat,
    served_fixtures,
    stream,
)

LONG = " ".join(f"word{i}" for i in range(60))  # about 60 tokens (the fake counts one per word)

DEPS = {
    "ra-p": Dep(fault="status=429,retry_after=1,times=1"),
    "ra-b": Dep(),
    "racap-p": Dep(fault="status=429,retry_after=30"),
    "racap-b": Dep(),
    "rl-p": Dep(fault="status=429"),
    "rl-b": Dep(),
    "rlsolo-p": Dep(fault="status=429"),
    "once-p": Dep(fault="status=500,times=1"),
    "down-p": Dep(fault="status=503"),
    "down-b": Dep(),
    "downsolo-p": Dep(fault="status=503"),
    "reset-p": Dep(fault="reset"),
    "reset-b": Dep(),
    "hang-p": Dep(fault="hang"),
    "hang-b": Dep(),
    "late-p": Dep(fault="first_token=20"),
    "late-b": Dep(),
    "ctx-small": Dep("context_window: 100", fault="max_context=40"),
    "ctx-big": Dep("context_window: 1000"),
    "ctxno-small": Dep("context_window: 100", fault="max_context=40"),
    "ctxno-same": Dep("context_window: 100"),
    "ctxno-unknown": Dep(),
    "tiny": Dep("context_window: 10"),
    "tiny-big": Dep("context_window: 1000"),
    "filter-p": Dep(fault="status=400,code=content_filter"),
    "filter-b": Dep(),
    "acct-p": Dep('price: {input: "10", output: "10"}', fault="status=503"),
    "acct-b": Dep('price: {input: "1", output: "2"}'),
}
GROUPS = {
    "ra": Group(["ra-p", "ra-b"], on_error="{rate_limit: retry}"),
    "racap": Group(["racap-p", "racap-b"], on_error="{rate_limit: retry}"),
    "rl": Group(["rl-p", "rl-b"]),
    "rlsolo": Group(["rlsolo-p"]),
    "once": Group(["once-p"]),
    "down": Group(["down-p", "down-b"]),
    "downsolo": Group(["downsolo-p"]),
    "reset": Group(["reset-p", "reset-b"]),
    "hang": Group(["hang-p", "hang-b"]),
    "late": Group(["late-p", "late-b"]),
    "ctx": Group(["ctx-small", "ctx-big"]),
    "ctxno": Group(["ctxno-small", "ctxno-same", "ctxno-unknown"]),
    "tiny": Group(["tiny", "tiny-big"]),
    "filter": Group(["filter-p", "filter-b"]),
    "acct": Group(["acct-p"], fallbacks=["acct-tier2"]),
    "acct-tier2": Group(["acct-b"]),
}


served, healthy_afterwards = served_fixtures("failover-errors", DEPS, GROUPS)


def test_429_with_retry_after_is_waited_for_then_retried_in_place(served: Served) -> None:
    reply = chat(served, "ra")
    assert reply.status == 200 and reply.text == PROMPT
    assert 1.0 <= reply.elapsed < DEADLINE_S  # Retry-After: 1 honoured
    assert reply.headers["x-margin-deployment"] == "ra-p"
    assert served.calls().get("ra-p") == 2 and "ra-b" not in served.calls()


def test_retry_after_over_the_cap_fails_over_at_once(served: Served) -> None:
    reply = chat(served, "racap")
    assert reply.status == 200 and reply.text == PROMPT
    assert reply.elapsed < 1.0
    assert served.calls().get("racap-p") == 1 and served.calls().get("racap-b") == 1


def test_persistent_429_without_retry_after_is_retried_once_then_fails_over(served: Served) -> None:
    reply = chat(served, "rl")
    assert reply.status == 200 and reply.text == PROMPT
    assert reply.headers["x-margin-fallback"] == "true"
    assert reply.headers["x-margin-fallback-from"] == "rl-p"
    assert reply.headers["x-margin-fallback-reason"] == "rate_limit"
    assert "x-margin-degraded" not in reply.headers  # another deployment of the same group
    assert served.calls().get("rl-p") == 2 and served.calls().get("rl-b") == 1  # retry_first: one retry in place


def test_persistent_429_with_nowhere_to_go_is_retried_once_then_returned(served: Served) -> None:
    reply = chat(served, "rlsolo")
    assert reply.status == 429 and reply.error["code"] == "upstream_rate_limited"
    assert reply.elapsed < DEADLINE_S
    assert served.calls().get("rlsolo-p") == 2  # max_retries: 1


def test_500_once_then_healthy_is_retried_in_place(served: Served) -> None:
    reply = chat(served, "once")
    assert reply.status == 200 and reply.text == PROMPT
    assert reply.headers["x-margin-attempts"] == "2"
    assert served.calls().get("once-p") == 2


@pytest.mark.parametrize("streamed", [False, True])
def test_persistent_503_is_retried_once_then_fails_over(served: Served, streamed: bool) -> None:
    before = served.calls()
    if streamed:
        answer = stream(served, "down")
        assert_complete(answer)
        headers, elapsed = answer.headers, answer.elapsed
    else:
        reply = chat(served, "down")
        assert reply.status == 200 and reply.text == PROMPT
        headers, elapsed = reply.headers, reply.elapsed
    assert headers["x-margin-deployment"] == "down-b" and headers["x-margin-fallback"] == "true"
    assert elapsed < 1.0
    after = served.calls()
    # One retry in place, unless the first failure is the third within the window (CIRCUIT: failures 3):
    # that one opens the circuit, which stops the in-place retry at once.
    expected = 1 if before.get("down-p", 0) == 2 else 2
    assert after["down-p"] - before.get("down-p", 0) == expected and after["down-b"] - before.get("down-b", 0) == 1


def test_persistent_503_alone_is_a_clean_503(served: Served) -> None:
    reply = chat(served, "downsolo")
    assert reply.status == 503 and reply.error["code"] == "upstream_overloaded"
    assert reply.elapsed < DEADLINE_S
    assert served.calls().get("downsolo-p") == 2


def test_tcp_reset_before_headers_is_retried_once_then_fails_over(served: Served) -> None:
    answer = stream(served, "reset")
    assert_complete(answer)
    assert answer.headers["x-margin-fallback-reason"] == "connection"
    assert served.calls().get("reset-p") == 2 and served.calls().get("reset-b") == 1


@pytest.mark.parametrize("streamed", [False, True])
def test_an_upstream_that_never_answers_is_abandoned_after_first_token_timeout(served: Served, streamed: bool) -> None:
    before = served.calls().get("hang-p", 0)
    if streamed:
        answer = stream(served, "hang")
        assert_complete(answer)
        elapsed, headers = answer.elapsed, answer.headers
    else:
        reply = chat(served, "hang")
        assert reply.status == 200 and reply.text == PROMPT
        elapsed, headers = reply.elapsed, reply.headers
    assert 0.5 <= elapsed < 1.5
    assert headers["x-margin-fallback-reason"] == "timeout"
    assert served.calls()["hang-p"] - before == 1  # not retried on the same route


def test_headers_at_once_but_a_late_first_token_fails_over(served: Served) -> None:
    answer = stream(served, "late")
    assert_complete(answer)
    assert 0.5 <= answer.elapsed < 1.5  # not the upstream's 20 s
    assert answer.models[0] == "late-b"
    assert served.calls().get("late-p") == 1


def test_context_length_fails_over_to_a_larger_window(served: Served) -> None:
    reply = chat(served, "ctx", text=LONG)
    assert reply.status == 200 and reply.text == LONG
    assert reply.headers["x-margin-deployment"] == "ctx-big"
    assert reply.headers["x-margin-fallback-reason"] == "context_length"
    assert served.calls().get("ctx-small") == 1 and served.calls().get("ctx-big") == 1


def test_context_length_without_a_larger_window_is_returned_without_trying_others(served: Served) -> None:
    reply = chat(served, "ctxno", text=LONG)
    assert reply.status == 400 and reply.error["code"] == "context_length_exceeded"
    assert reply.elapsed < 1.0
    calls = served.calls()
    assert calls.get("ctxno-small") == 1  # never retried on the same model...
    assert "ctxno-same" not in calls and "ctxno-unknown" not in calls  # ...nor sent where it cannot fit


def test_a_prompt_over_a_known_window_skips_that_deployment_before_calling_it(served: Served) -> None:
    reply = chat(served, "tiny", text=LONG)
    assert reply.status == 200 and reply.headers["x-margin-deployment"] == "tiny-big"
    assert "tiny" not in served.calls()


def test_content_filter_is_returned_with_the_provider_reason_and_never_retried(served: Served) -> None:
    reply = chat(served, "filter")
    assert reply.status == 400
    assert reply.error["code"] == "content_filter"
    assert "content management policy" in reply.error["message"]
    assert served.calls().get("filter-p") == 1 and "filter-b" not in served.calls()


def test_failed_attempts_are_recorded_but_never_billed_as_the_fallback(served: Served) -> None:
    reply = chat(served, "acct")
    assert reply.status == 200 and reply.headers["x-margin-deployment"] == "acct-b"
    assert reply.headers["x-margin-degraded"] == "true"  # served by the fallback group, another tier
    usage = reply.body["usage"]
    # Only the fallback's own usage at the fallback's price ($1 / $2 per million tokens).
    expected = (Decimal(usage["prompt_tokens"]) * 1 + Decimal(usage["completion_tokens"]) * 2) / 1_000_000
    assert Decimal(reply.headers["x-margin-cost-usd"]) == expected
    rows = served.ledger(reply.headers["x-request-id"], expected=3)
    statuses = [(r["deployment"], r["status"]) for r in rows]
    assert statuses == [("acct-p", "error"), ("acct-p", "error"), ("acct-b", "ok")]  # one retry in place
    assert all(Decimal(r["cost_total"]) == 0 and r["output"] == 0 for r in rows[:2])
    assert Decimal(rows[2]["cost_total"]) == expected
