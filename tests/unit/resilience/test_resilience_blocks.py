"""The pure building blocks: error policy, backoff, deadline, retry budget, attempt limiter, chain."""

from __future__ import annotations

import pytest

from margin import errors
from margin.config import parse_config
from margin.config.model import DeploymentConfig, RetryPolicy
from margin.errors import ConfigError
from margin.resilience.attempt_rate import AttemptLimiter
from margin.resilience.backoff import backoff, retry_delay
from margin.resilience.chain import Chain, DeploymentLimits
from margin.resilience.deadline import Deadline, RetryBudget
from margin.resilience.error_actions import DEFAULT_ACTIONS, ERROR_CLASSES, ErrorPolicy, error_class


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (errors.ContextLengthExceeded("x"), "context_length"),
        (errors.ContentFiltered("x"), "content_filter"),
        (errors.UpstreamBadRequest("x"), "bad_request"),
        (errors.UpstreamRateLimit("x"), "rate_limit"),
        (errors.UpstreamOverloaded("x"), "overloaded"),
        (errors.UpstreamServerError("x"), "server_error"),
        (errors.UpstreamTimeout("x"), "timeout"),
        (errors.UpstreamConnection("x"), "connection"),
        (errors.StreamInterrupted("x"), "stream_interrupted"),
        (errors.UpstreamAuth("x"), "auth"),
        (errors.UpstreamModelGone("x"), "model_gone"),
        (errors.CapacityExceeded("x"), "capacity"),
        (errors.InvalidRequest("x"), None),
        (errors.ServiceUnavailable("x"), None),
    ],
)
def test_error_classes(error: errors.MarginError, name: str | None) -> None:
    assert error_class(error) == name


def test_every_class_has_a_default_action() -> None:
    assert set(DEFAULT_ACTIONS) == set(ERROR_CLASSES)


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (errors.UpstreamOverloaded("x"), "retry"),
        (errors.UpstreamTimeout("x"), "failover"),
        (errors.ContextLengthExceeded("x"), "failover"),
        (errors.ContentFiltered("x"), "return"),
        (errors.UpstreamBadRequest("x"), "return"),
        (errors.InvalidRequest("x"), "return"),
    ],
)
def test_default_actions(error: errors.MarginError, action: str) -> None:
    assert ErrorPolicy().action(error) == action


def test_overrides_apply_but_never_retry_what_is_not_retryable() -> None:
    policy = ErrorPolicy.with_overrides({"rate_limit": "retry", "timeout": "retry", "server_error": "return"})
    assert policy.action(errors.UpstreamRateLimit("x")) == "retry"
    assert policy.action(errors.UpstreamTimeout("x")) == "failover"  # a silent upstream is never asked again
    assert policy.action(errors.UpstreamServerError("x")) == "return"


@pytest.mark.parametrize("kind", ["context_length", "content_filter", "bad_request"])
def test_config_refuses_to_retry_what_the_same_model_would_refuse_again(kind: str) -> None:
    text = f"""
deployments: [{{name: a, provider: fake, model: m}}]
models: [{{name: g, deployments: [a], on_error: {{{kind}: retry}}}}]
"""
    with pytest.raises(ConfigError, match="can never be retried"):
        parse_config(text)


def test_config_checks_fallback_groups() -> None:
    base = "deployments: [{name: a, provider: fake, model: m}]\n"
    with pytest.raises(ConfigError, match="unknown groups: nope"):
        parse_config(base + "models: [{name: g, deployments: [a], fallbacks: [nope]}]")
    with pytest.raises(ConfigError, match="unknown groups: g"):
        parse_config(base + "models: [{name: g, deployments: [a], fallbacks: [g]}]")
    config = parse_config(base + "models: [{name: g, deployments: [a], fallbacks: [h]}, {name: h, deployments: [a]}]")
    assert config.models[0].fallbacks == ["h"]


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    assert [backoff(i, policy, lambda: 1.0) for i in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff(3, policy, lambda: 0.0) == 0.0
    assert backoff(10_000, policy, lambda: 1.0) == 1.0  # no overflow


def test_retry_after_is_a_floor_up_to_the_cap() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0, retry_after_cap=5)
    assert retry_delay(0, 2.0, policy, lambda: 1.0) == 2.0
    assert retry_delay(0, 0.01, policy, lambda: 1.0) == 0.1
    assert retry_delay(0, 5.0, policy, lambda: 1.0) == 5.0
    assert retry_delay(0, 5.1, policy, lambda: 1.0) is None  # over the cap: fail over instead
    assert retry_delay(0, None, policy, lambda: 0.5) == 0.05


def test_deadline_and_budget() -> None:
    clock = Clock()
    deadline = Deadline.after(2.0, clock)
    assert deadline.remaining() == 2.0 and not deadline.expired
    assert deadline.bound(5.0) == 2.0 and deadline.bound(1.0) == 1.0
    clock.now += 2.5
    assert deadline.remaining() == 0.0 and deadline.expired
    budget = RetryBudget(2)
    assert [budget.take() for _ in range(3)] == [True, True, False]
    assert budget.spent == 2


def test_attempt_limiter_is_a_token_bucket_per_deployment() -> None:
    clock = Clock()
    limiter = AttemptLimiter({"a": 2.0}, clock)
    assert [limiter.try_acquire("a") for _ in range(3)] == [True, True, False]  # burst of one second
    assert all(limiter.try_acquire("b") for _ in range(100))  # no limit configured
    clock.now += 0.5
    assert limiter.try_acquire("a") and not limiter.try_acquire("a")
    slow = AttemptLimiter({"s": 0.5}, clock)
    assert slow.try_acquire("s") and not slow.try_acquire("s")
    clock.now += 1.0
    assert not slow.try_acquire("s")
    clock.now += 1.0
    assert slow.try_acquire("s")


def limits(name: str, window: int | None) -> DeploymentLimits:
    return DeploymentLimits.of(DeploymentConfig(name=name, provider="fake", model="m", context_window=window))


def test_chain_preflight_and_context_errors() -> None:
    table = {n: limits(n, w) for n, w in [("small", 100), ("mid", 200), ("big", 1000), ("unknown", None)]}
    chain = Chain(table, prompt_tokens=150)
    assert [n for n in table if chain.fits(n)] == ["mid", "big", "unknown"]  # 150 > 100 * 1.25
    chain.context_exceeded("mid")
    assert [n for n in table if chain.fits(n)] == ["big"]  # only a known, larger window
    chain = Chain(table, prompt_tokens=120)
    assert chain.fits("small")  # within the estimate's slack: let the upstream decide
    chain.context_exceeded("unknown")  # window unknown: the estimate is the floor
    assert [n for n in table if chain.fits(n)] == ["mid", "big"]
