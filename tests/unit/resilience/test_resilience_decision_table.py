"""The failover decision table of docs/failover.md, one row at a time: what each error class does by
default (`failover.mode: retry_first`) and in `failover_first` mode, and the wait rule of a retry
in place (Retry-After up to its cap, jittered back-off otherwise, within the deadline)."""

from __future__ import annotations

import time

import pytest
from tests.unit.resilience.scripted import build, ctx, request

from margin import errors
from margin.config import parse_config
from margin.config.model import ErrorAction, ErrorClassName, FailoverMode, RetryPolicy
from margin.resilience.backoff import in_place_wait
from margin.resilience.error_actions import ERROR_CLASSES, ErrorPolicy
from margin.resilience.state import Resilience

# One instance of every error class, as an upstream adapter would raise it.
SAMPLES: dict[ErrorClassName, errors.MarginError] = {
    "rate_limit": errors.UpstreamRateLimit("slow down", deployment="primary"),
    "overloaded": errors.UpstreamOverloaded("busy", deployment="primary"),
    "server_error": errors.UpstreamServerError("500", deployment="primary"),
    "connection": errors.UpstreamConnection("refused", deployment="primary"),
    "timeout": errors.UpstreamTimeout("silent", deployment="primary", code="first_token_timeout"),
    "stream_interrupted": errors.StreamInterrupted("cut", deployment="primary"),
    "auth": errors.UpstreamAuth("bad key", deployment="primary"),
    "model_gone": errors.UpstreamModelGone("404", deployment="primary"),
    "capacity": errors.CapacityExceeded("queue full"),
    "context_length": errors.ContextLengthExceeded("too long", deployment="primary"),
    "content_filter": errors.ContentFiltered("no", deployment="primary"),
    "bad_request": errors.UpstreamBadRequest("no", deployment="primary"),
}

# error class -> (retry_first action, failover_first action): the table in docs/failover.md.
TABLE: dict[ErrorClassName, tuple[ErrorAction, ErrorAction]] = {
    "rate_limit": ("retry", "failover"),
    "overloaded": ("retry", "failover"),
    "server_error": ("retry", "failover"),
    "connection": ("retry", "failover"),
    "timeout": ("failover", "failover"),
    "stream_interrupted": ("failover", "failover"),
    "auth": ("failover", "failover"),
    "model_gone": ("failover", "failover"),
    "capacity": ("failover", "failover"),
    "context_length": ("failover", "failover"),
    "content_filter": ("return", "return"),
    "bad_request": ("return", "return"),
}

# What the route does after one such error on the primary (then a healthy upstream): the attempts.
RETRIED = ["primary", "primary"]
FAILED_OVER = ["primary", "backup"]
RETURNED = ["primary"]
SEQUENCE = {"retry": RETRIED, "failover": FAILED_OVER, "return": RETURNED}
WINDOWS = {"primary": "context_window: 100", "backup": "context_window: 1000"}  # context_length can move on


def test_the_table_covers_every_error_class() -> None:
    assert set(TABLE) == set(ERROR_CLASSES) == set(SAMPLES)


@pytest.mark.parametrize("mode", ["retry_first", "failover_first"])
@pytest.mark.parametrize("kind", list(TABLE))
def test_the_action_of_each_class(kind: ErrorClassName, mode: FailoverMode) -> None:
    expected = TABLE[kind][0 if mode == "retry_first" else 1]
    assert ErrorPolicy.with_overrides({}, mode).action(SAMPLES[kind]) == expected


@pytest.mark.parametrize("mode", ["retry_first", "failover_first"])
@pytest.mark.parametrize("kind", list(TABLE))
async def test_each_row_end_to_end_through_the_call_stage(kind: ErrorClassName, mode: FailoverMode) -> None:
    action = TABLE[kind][0 if mode == "retry_first" else 1]
    retry = "retry: {max_retries: 1, base_delay: 0.01, max_delay: 0.02}"
    extra = {name: f"{window}, {retry}" for name, window in WINDOWS.items()}
    pipeline, providers, _ = build(primary=(SAMPLES[kind],), extra=extra, chat=f", failover_mode: {mode}")
    context = ctx()
    if action == "return":
        with pytest.raises(type(SAMPLES[kind])):
            await pipeline.chat(context, request())
    else:
        await pipeline.chat(context, request())
    assert [a.deployment for a in context.attempts] == SEQUENCE[action]
    assert providers["backup"].calls == (1 if action == "failover" else 0)


def test_the_global_mode_sets_every_group_and_on_error_still_wins() -> None:
    pipeline, _, _ = build(chat=", on_error: {rate_limit: retry}")
    resilience = pipeline.caller.resilience
    assert resilience.policy("chat").action(SAMPLES["overloaded"]) == "retry"
    config = parse_config(
        """
failover: {mode: failover_first}
deployments: [{name: a, provider: fake, model: m}]
models:
  - {name: g, deployments: [a], on_error: {rate_limit: retry}}
  - {name: h, deployments: [a], failover_mode: retry_first}
"""
    )
    res = Resilience.from_config(config)
    assert res.policy("g").action(SAMPLES["overloaded"]) == "failover"
    assert res.policy("g").action(SAMPLES["rate_limit"]) == "retry"
    assert res.policy("h").action(SAMPLES["overloaded"]) == "retry"
    assert res.policy("not-a-group").action(SAMPLES["server_error"]) == "failover"  # the global mode


# --- the wait rule -------------------------------------------------------------------------------

POLICY = RetryPolicy(max_retries=1, base_delay=0.2, max_delay=5, retry_after_cap=10)


def wait(
    error: errors.MarginError,
    action: ErrorAction = "retry",
    *,
    retries: int = 0,
    alternatives: bool = True,
    probe: bool = False,
    remaining: float = 300,
) -> float | None:
    return in_place_wait(
        error,
        action,
        POLICY,
        retries=retries,
        alternatives=alternatives,
        probe=probe,
        remaining=remaining,
        rand=lambda: 0.5,
    )


def rate_limit(after: float | None) -> errors.UpstreamRateLimit:
    return errors.UpstreamRateLimit("429", deployment="p", retry_after=after)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("retry_after_within_cap", 2.0),  # Retry-After: 2 is waited for
        ("retry_after_at_cap", 10.0),
        ("retry_after_over_cap", None),  # a minute's wait is failed over, not parked
        ("no_retry_after", 0.1),  # full jitter: 0.5 x base_delay 0.2
        ("short_retry_after_under_backoff", 0.1),  # Retry-After is a floor on the back-off, not a ceiling
        ("wait_past_the_deadline", None),
        ("max_retries_spent", None),
        ("probe", None),  # a failed probe re-opened the circuit: never retried
        ("failover_with_somewhere_to_go", None),
        ("failover_with_nowhere_to_go", 0.1),  # a retryable error on the last deployment: one more try
        ("timeout_with_nowhere_to_go", None),  # a silent upstream is never asked again
    ],
)
def test_the_wait_rule(case: str, expected: float | None) -> None:
    got = {
        "retry_after_within_cap": lambda: wait(rate_limit(2.0)),
        "retry_after_at_cap": lambda: wait(rate_limit(10.0)),
        "retry_after_over_cap": lambda: wait(rate_limit(10.5)),
        "no_retry_after": lambda: wait(rate_limit(None)),
        "short_retry_after_under_backoff": lambda: wait(rate_limit(0.05)),
        "wait_past_the_deadline": lambda: wait(rate_limit(2.0), remaining=1.5),
        "max_retries_spent": lambda: wait(rate_limit(None), retries=1),
        "probe": lambda: wait(rate_limit(None), probe=True),
        "failover_with_somewhere_to_go": lambda: wait(rate_limit(None), "failover"),
        "failover_with_nowhere_to_go": lambda: wait(rate_limit(None), "failover", alternatives=False),
        "timeout_with_nowhere_to_go": lambda: wait(SAMPLES["timeout"], "failover", alternatives=False),
    }[case]()
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


async def test_retry_after_within_the_cap_is_waited_for_on_the_primary_before_any_fallback() -> None:
    pipeline, providers, _ = build(primary=(rate_limit(0.3),))
    context = ctx()
    started = time.monotonic()
    result = await pipeline.chat(context, request())
    assert time.monotonic() - started >= 0.3
    assert result.model == "big" and providers["backup"].calls == 0


async def test_retry_after_over_the_cap_fails_over_without_waiting() -> None:
    pipeline, _, _ = build(primary=(rate_limit(5.0),))  # the scripted deployments' cap is 1 s
    context = ctx()
    started = time.monotonic()
    result = await pipeline.chat(context, request())
    assert time.monotonic() - started < 0.5
    assert result.model == "small" and [a.deployment for a in context.attempts] == FAILED_OVER


async def test_a_wait_the_deadline_cannot_hold_fails_over_without_waiting() -> None:
    pipeline, _, _ = build(primary=(rate_limit(0.8),), deadline=0.5)
    context = ctx()
    started = time.monotonic()
    result = await pipeline.chat(context, request())
    assert time.monotonic() - started < 0.4
    assert result.model == "small"


async def test_after_max_retries_the_request_fails_over() -> None:
    busy = SAMPLES["overloaded"]
    pipeline, _, _ = build(primary=(busy, busy, busy))
    context = ctx()
    result = await pipeline.chat(context, request())
    assert result.model == "small"
    assert [a.deployment for a in context.attempts] == ["primary", "primary", "backup"]
