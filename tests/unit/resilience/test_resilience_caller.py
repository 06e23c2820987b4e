"""Stage ⑤ in process: retries in place, failover, deadline, retry budget, attempt limits, circuits."""

from __future__ import annotations

import asyncio
import time

import pytest
from tests.unit.resilience.scripted import FAST_RETRY, HANG, build, ctx, request

from margin import errors

OVERLOADED = errors.UpstreamOverloaded("busy", deployment="x")


async def test_a_transient_error_is_retried_in_place_first_by_default() -> None:
    pipeline, _, _ = build(primary=(OVERLOADED,))
    context = ctx()
    result = await pipeline.chat(context, request())
    assert result.model == "big"
    assert [(a.deployment, a.status) for a in context.attempts] == [("primary", "error"), ("primary", "ok")]
    assert "x-margin-fallback" not in context.extra_headers


async def test_a_transient_error_fails_over_at_once_in_failover_first_mode() -> None:
    pipeline, _, _ = build(primary=(OVERLOADED,), chat=", failover_mode: failover_first")
    context = ctx()
    result = await pipeline.chat(context, request())
    assert result.model == "small"
    assert [a.deployment for a in context.attempts] == ["primary", "backup"]
    assert context.extra_headers["x-margin-fallback"] == "true"
    assert context.extra_headers["x-margin-fallback-reason"] == "overloaded"


async def test_a_transient_error_is_retried_in_place_when_nothing_else_is_left() -> None:
    pipeline, _, _ = build(solo=(OVERLOADED,))
    context = ctx()
    await pipeline.chat(context, request("alone"))
    assert [(a.deployment, a.status) for a in context.attempts] == [("solo", "error"), ("solo", "ok")]
    assert "x-margin-fallback" not in context.extra_headers


async def test_retry_after_is_honoured() -> None:
    pipeline, _, _ = build(solo=(errors.UpstreamRateLimit("slow", deployment="solo", retry_after=0.3),))
    started = time.monotonic()
    await pipeline.chat(ctx(), request("alone"))
    assert time.monotonic() - started >= 0.3


async def test_retry_first_when_the_group_says_so() -> None:
    pipeline, _, _ = build(primary=(OVERLOADED,), chat=", on_error: {overloaded: retry}")
    context = ctx()
    await pipeline.chat(context, request())
    assert [a.deployment for a in context.attempts] == ["primary", "primary"]


async def test_the_retry_budget_is_per_request() -> None:
    pipeline, providers, _ = build(solo=(OVERLOADED, OVERLOADED), budget=0)
    with pytest.raises(errors.UpstreamOverloaded):
        await pipeline.chat(ctx(), request("alone"))
    assert providers["solo"].calls == 1


async def test_a_timeout_is_not_retried_on_the_same_deployment() -> None:
    timeout = errors.UpstreamTimeout("silent", deployment="solo", code="first_token_timeout")
    pipeline, providers, _ = build(solo=(timeout,))
    with pytest.raises(errors.UpstreamTimeout):
        await pipeline.chat(ctx(), request("alone"))
    assert providers["solo"].calls == 1


async def test_the_deadline_bounds_a_silent_upstream_and_ends_its_attempt() -> None:
    pipeline, _, records = build(solo=(HANG,), deadline=0.3)
    context = ctx()
    started = time.monotonic()
    with pytest.raises(errors.UpstreamTimeout) as caught:
        await pipeline.chat(context, request("alone"))
    assert caught.value.error_code == "deadline_exceeded"
    assert 0.3 <= time.monotonic() - started < 0.6
    assert pipeline.caller.in_flight["solo"] == 0
    assert records[0].status == "UpstreamTimeout"


async def test_content_filter_and_bad_requests_go_straight_back() -> None:
    for error in (errors.ContentFiltered("no", deployment="p"), errors.UpstreamBadRequest("no", deployment="p")):
        pipeline, providers, _ = build(primary=(error,))
        with pytest.raises(type(error)):
            await pipeline.chat(ctx(), request())
        assert providers["backup"].calls == 0


async def test_max_attempts_per_second_skips_a_deployment_instead_of_hammering_it() -> None:
    pipeline, _, _ = build(extra={"primary": "max_attempts_per_second: 1"})
    first, second = ctx(), ctx()
    await pipeline.chat(first, request())
    await pipeline.chat(second, request())
    assert first.deployment == "primary" and second.deployment == "backup"
    assert second.extra_headers["x-margin-fallback-reason"] == "attempt_rate"


async def test_an_open_circuit_sends_traffic_to_the_fallback_without_calling_the_primary() -> None:
    circuit = "circuit: {failures: 2, window: 60, cooldown: 60}"
    pipeline, providers, _ = build(primary=(OVERLOADED, OVERLOADED), extra={"primary": circuit})
    for _ in range(2):
        await pipeline.chat(ctx(), request())
    assert providers["primary"].calls == 2
    context = ctx()
    await pipeline.chat(context, request())
    assert providers["primary"].calls == 2  # skipped while open
    assert [a.deployment for a in context.attempts] == ["backup"]
    assert context.extra_headers["x-margin-fallback-reason"] == "circuit_open"


async def test_every_circuit_open_is_a_503_with_retry_after() -> None:
    circuit = "circuit: {failures: 1, window: 60, cooldown: 30}"
    pipeline, _, _ = build(solo=(OVERLOADED, OVERLOADED), extra={"solo": circuit + ", retry: {max_retries: 0}"})
    with pytest.raises(errors.UpstreamOverloaded):
        await pipeline.chat(ctx(), request("alone"))
    with pytest.raises(errors.ServiceUnavailable) as caught:
        await pipeline.chat(ctx(), request("alone"))
    assert caught.value.headers["retry-after"] == "30"
    assert "circuit open" in caught.value.message


async def test_a_cancelled_request_ends_its_attempt() -> None:
    pipeline, _, _ = build(solo=(HANG,))
    context = ctx()
    task = asyncio.create_task(pipeline.chat(context, request("alone")))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert context.attempts[0].status == "cancelled"
    assert pipeline.caller.in_flight["solo"] == 0


async def test_embeddings_fail_over_too() -> None:
    from margin.types import EmbeddingRequest

    pipeline, _, _ = build()
    provider = pipeline.caller.providers["primary"]
    provider.embed = _raise(OVERLOADED)  # type: ignore[method-assign]
    context = ctx()
    result = await pipeline.embed(context, EmbeddingRequest(model="chat", inputs=["a"]))
    # Retried in place once (max_retries: 1), then failed over.
    assert result.model == "small" and [a.deployment for a in context.attempts] == ["primary", "primary", "backup"]


def _raise(error: errors.MarginError):  # type: ignore[no-untyped-def]
    async def embed(request: object) -> None:
        raise error

    return embed


async def test_a_circuit_opened_by_a_failure_stops_the_in_place_retries_at_once() -> None:
    # Regression (issue 15, 3): the retry loop rechecked the attempt limiter, not the circuit, so the
    # failure that opened the circuit was followed by one more call to the same deployment.
    circuit = "circuit: {failures: 1, window: 60, cooldown: 60}, " + FAST_RETRY
    pipeline, providers, _ = build(solo=(OVERLOADED, OVERLOADED), extra={"solo": circuit})
    with pytest.raises(errors.UpstreamOverloaded):
        await pipeline.chat(ctx(), request("alone"))
    assert providers["solo"].calls == 1


async def test_a_circuit_opened_during_a_retry_loop_sends_the_request_to_the_fallback() -> None:
    circuit = "circuit: {failures: 1, window: 60, cooldown: 60}, " + FAST_RETRY
    pipeline, providers, _ = build(
        primary=(OVERLOADED, OVERLOADED), extra={"primary": circuit}, chat=", on_error: {overloaded: retry}"
    )
    context = ctx()
    result = await pipeline.chat(context, request())
    assert result.model == "small"
    assert providers["primary"].calls == 1
    assert [a.deployment for a in context.attempts] == ["primary", "backup"]
