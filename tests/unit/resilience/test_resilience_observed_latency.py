"""Stream timeouts from measured latency: the rolling windows with a fake clock, then the call stage
tightening a stream's first-token and idle waits (and leaving them alone where it must)."""

from __future__ import annotations

import math
import random
import time

import pytest
from tests.unit.resilience.scripted import FAST_RETRY, HANG, Stall, build, ctx, request, text_of

from margin import errors
from margin.config.model import AdaptiveTimeouts, Timeouts
from margin.pipeline.context import RequestContext
from margin.pipeline.handler import Pipeline
from margin.resilience.observed_latency import ObservedLatency, _Window
from margin.types import Chunk

DEFAULTS = Timeouts()  # first_token and idle unset: 30 s ceilings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def observed(**settings: float) -> tuple[ObservedLatency, Clock]:
    clock = Clock()
    return ObservedLatency(AdaptiveTimeouts(**settings), clock), clock


def feed(latency: ObservedLatency, seconds: float, n: int = 20, deployment: str = "d") -> None:
    for _ in range(n):
        latency.first_token_seen(deployment, seconds)
        latency.longest_gap_seen(deployment, seconds)


def test_the_configured_timeout_holds_until_there_are_enough_measurements() -> None:
    latency, _ = observed()
    feed(latency, 0.1, n=19)
    assert latency.first_token_timeout("d", DEFAULTS) is None
    feed(latency, 0.1, n=1)
    assert latency.first_token_timeout("d", DEFAULTS) == 3.0  # 3 x 0.1 s is under the floor


@pytest.mark.parametrize(
    ("measured", "first_token", "idle"),
    [
        (0.1, 3.0, 5.0),  # floors
        (2.0, 6.0, 6.0),  # 3 x p99
        (4.0, 12.0, 12.0),
        (10.0, None, None),  # 3 x 10 s reaches the 30 s ceiling: the configured value holds
    ],
)
def test_clamp_of_three_times_p99(measured: float, first_token: float | None, idle: float | None) -> None:
    latency, _ = observed()
    feed(latency, measured)
    assert latency.first_token_timeout("d", DEFAULTS) == first_token
    assert latency.idle_timeout("d", DEFAULTS) == idle


def test_the_quantile_is_the_nearest_rank_p99() -> None:
    latency, _ = observed(multiplier=1, first_token_floor=0.001)
    for i in range(1, 101):
        latency.first_token_seen("d", i / 10)
    assert latency.first_token_timeout("d", DEFAULTS) == pytest.approx(9.9)  # the 99th of 100


def test_deployments_are_measured_apart() -> None:
    latency, _ = observed()
    feed(latency, 4.0, deployment="slow")
    feed(latency, 0.1, deployment="fast")
    assert latency.first_token_timeout("slow", DEFAULTS) == 12.0
    assert latency.first_token_timeout("fast", DEFAULTS) == 3.0
    assert latency.first_token_timeout("unseen", DEFAULTS) is None


def test_an_explicit_timeout_always_wins() -> None:
    latency, _ = observed()
    feed(latency, 0.1)
    explicit = Timeouts(first_token=30)  # even when set to the default value
    assert latency.first_token_timeout("d", explicit) is None
    assert latency.idle_timeout("d", explicit) == 5.0  # idle was left unset
    assert latency.idle_timeout("d", Timeouts(idle=20)) is None


def test_switched_off() -> None:
    latency, _ = observed(enabled=False)
    feed(latency, 0.1)
    assert latency.first_token_timeout("d", DEFAULTS) is None and latency.idle_timeout("d", DEFAULTS) is None


def test_old_measurements_are_forgotten() -> None:
    latency, clock = observed(horizon_s=60)
    feed(latency, 0.1)
    clock.now += 30
    assert latency.first_token_timeout("d", DEFAULTS) == 3.0
    clock.now += 31
    assert latency.first_token_timeout("d", DEFAULTS) is None  # nothing recent: back to the ceiling


def test_only_the_most_recent_window_counts() -> None:
    latency, _ = observed(window=50)
    feed(latency, 8.0, n=50)
    assert latency.first_token_timeout("d", DEFAULTS) == 24.0
    feed(latency, 0.5, n=50)
    assert latency.first_token_timeout("d", DEFAULTS) == 3.0


def test_the_kept_order_gives_the_quantile_of_a_sort_as_measurements_come_and_go() -> None:
    """The window keeps its seconds in order as they arrive, leave by age and fall out of the
    window (repeated values included): each quantile is the one a sort of the window would give."""
    rng = random.Random(7)
    window = _Window(size=50)
    for step in range(3000):
        now = step * 0.1
        window.add(now, round(rng.expovariate(3.0), 2))  # rounded: many equal values
        horizon = rng.choice((2.0, 4.0, 600.0))
        q = rng.choice((0.5, 0.9, 0.99, 1.0))
        got = window.quantile(q, now, horizon, min_samples=5)
        kept = sorted(seconds for when, seconds in window.samples)
        assert window.ordered == kept and len(kept) <= 50
        assert all(when >= now - horizon for when, _ in window.samples)
        assert got == (kept[max(0, math.ceil(q * len(kept)) - 1)] if len(kept) >= 5 else None)


def test_fired_timeouts_raise_the_bound_so_a_slower_deployment_is_not_cut_off_for_good() -> None:
    latency, _ = observed()
    feed(latency, 2.0, n=100)
    bound = latency.first_token_timeout("d", DEFAULTS)
    assert bound == 6.0
    seen: list[float | None] = [bound]
    while bound is not None:  # the deployment now takes 20 s: every tightened wait fires
        latency.first_token_seen("d", bound)  # what the call stage records when one fires
        bound = latency.first_token_timeout("d", DEFAULTS)
        seen.append(bound)
    assert seen[-2] == 18.0 and seen[-1] is None  # 6 -> 18 -> the 30 s ceiling, after a few timeouts
    assert len(seen) <= 5


def test_describe_shows_the_numbers_operators_see() -> None:
    latency, _ = observed()
    feed(latency, 2.0)
    assert latency.describe("d", DEFAULTS) == {
        "first_token_samples": 20,
        "first_token_timeout_s": 6.0,
        "idle_samples": 20,
        "idle_timeout_s": 6.0,
    }
    assert latency.describe("new", DEFAULTS)["first_token_timeout_s"] == 30.0


# --- the call stage -------------------------------------------------------------------------------

LOW_FLOORS = ", adaptive_timeouts: {first_token_floor: 0.2, idle_floor: 0.2}"
PREFILL_BACKUP = {"backup": "capabilities: {prefill: true}, " + FAST_RETRY}


def warm(pipeline: Pipeline, deployment: str, seconds: float = 0.01) -> None:
    latency = pipeline.caller.resilience.latency
    feed(latency, seconds, n=20, deployment=deployment)


async def read_all(pipeline: Pipeline, model: str) -> tuple[list[Chunk], RequestContext, float]:
    context = ctx()
    started = time.monotonic()
    stream = await pipeline.stream(context, request(model, stream=True))
    chunks = [c async for c in stream]
    return chunks, context, time.monotonic() - started


async def test_a_stalled_first_token_fails_over_at_the_measured_bound() -> None:
    pipeline, providers, _ = build(primary=(HANG,), failover=LOW_FLOORS)
    warm(pipeline, "primary")
    chunks, context, elapsed = await read_all(pipeline, "chat")
    assert 0.2 <= elapsed < 1.0  # not the 30 s configured ceiling
    assert (context.attempts[0].deployment, context.attempts[0].status) == ("primary", "error")
    assert context.extra_headers["x-margin-fallback-reason"] == "timeout"
    assert text_of(chunks) == "one two three four five six seven eight"
    assert providers["backup"].calls == 1


async def test_without_measurements_the_configured_timeout_holds() -> None:
    pipeline, _, _ = build(primary=(HANG,), failover=LOW_FLOORS, deadline=0.6)
    with pytest.raises(errors.UpstreamTimeout) as caught:
        await read_all(pipeline, "chat")
    assert caught.value.error_code == "deadline_exceeded"  # nothing measured: nothing tightened


async def test_a_deployment_alone_on_its_route_keeps_the_configured_timeout() -> None:
    pipeline, _, _ = build(solo=(HANG,), failover=LOW_FLOORS, deadline=0.6)
    warm(pipeline, "solo")
    with pytest.raises(errors.UpstreamTimeout) as caught:
        await read_all(pipeline, "alone")
    assert caught.value.error_code == "deadline_exceeded"  # nowhere to fail over to: wait in full


async def test_an_explicit_first_token_timeout_is_not_tightened() -> None:
    extra = {"primary": "timeouts: {first_token: 30}, " + FAST_RETRY}
    pipeline, _, _ = build(primary=(HANG,), failover=LOW_FLOORS, deadline=0.6, extra=extra)
    warm(pipeline, "primary")
    with pytest.raises(errors.UpstreamTimeout) as caught:
        await read_all(pipeline, "chat")
    assert caught.value.error_code == "deadline_exceeded"


async def test_streams_feed_the_measurements() -> None:
    pipeline, _, _ = build()
    for _ in range(3):
        await read_all(pipeline, "chat")
    caller = pipeline.caller
    numbers = caller.resilience.latency.describe("primary", caller.providers["primary"].deployment.timeouts)
    assert numbers["first_token_samples"] == 3 and numbers["idle_samples"] == 3


async def test_a_stall_mid_stream_is_cut_at_the_measured_idle_bound_and_continued() -> None:
    pipeline, _, _ = build(primary=(Stall(after=3),), failover=LOW_FLOORS, extra=PREFILL_BACKUP)
    warm(pipeline, "primary")
    chunks, context, elapsed = await read_all(pipeline, "chat")
    assert 0.2 <= elapsed < 1.0
    assert text_of(chunks) == "one two three four five six seven eight"  # continued on the prefill backup
    assert [a.deployment for a in context.attempts] == ["primary", "backup"]
    assert context.attempts[0].error_class == "UpstreamTimeout"


async def test_no_idle_tightening_without_a_deployment_that_could_continue() -> None:
    pipeline, _, _ = build(primary=(Stall(after=3),), failover=LOW_FLOORS, deadline=0.8)
    warm(pipeline, "primary")
    with pytest.raises(errors.StreamInterrupted) as caught:
        await read_all(pipeline, "chat")
    assert "deadline" in caught.value.message  # the stall ran into the request's deadline, not our bound
