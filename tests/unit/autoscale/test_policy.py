"""The desired replica count (docs/deploy.md, "The desired replica count")."""

from __future__ import annotations

import math

from margin.autoscale.policy import Inputs, desired_replicas
from margin.autoscale.window import Rates, quantile
from margin.config.autoscale import DeploymentScaling

POLICY = DeploymentScaling(target_queue_per_replica=8, target_ttft_p95_s=1.0, min_replicas=0, max_replicas=6)


def rates(*, calls: float = 1.0, unserved: float = 0.0, ttft: float | None = None) -> Rates:
    return Rates(60.0, calls, unserved, 100.0, 50.0, None, ttft)


def test_queue_term_divides_upstream_load_by_the_target_per_replica() -> None:
    for load, want in ((1, 1), (8, 1), (9, 2), (24, 3), (200, 6)):
        decision = desired_replicas(POLICY, Inputs(0, float(load), 1, rates()))
        assert decision.desired == want, load
        assert decision.load_source == "upstream"
    assert desired_replicas(POLICY, Inputs(0, 200.0, 1, rates())).reason == "max"


def test_without_a_fresh_page_margins_own_in_flight_is_the_load() -> None:
    decision = desired_replicas(POLICY, Inputs(17, None, 0, rates()))
    assert (decision.desired, decision.load, decision.load_source) == (3, 17.0, "margin")


def test_ttft_p95_above_target_scales_out_in_proportion() -> None:
    decision = desired_replicas(POLICY, Inputs(0, 4.0, 2, rates(ttft=2.5)))
    assert (decision.desired, decision.reason) == (5, "ttft_p95")  # ceil(2 x 2.5 / 1.0)


def test_requests_that_found_no_endpoint_wake_a_deployment_at_zero() -> None:
    idle = desired_replicas(POLICY, Inputs(0, None, 0, rates(calls=0.0)))
    assert (idle.desired, idle.reason) == (0, "idle")
    woken = desired_replicas(POLICY, Inputs(0, None, 0, rates(calls=0.0, unserved=0.2)))
    assert (woken.desired, woken.reason) == (1, "demand")


def test_min_replicas_holds_when_idle() -> None:
    policy = DeploymentScaling(min_replicas=2, max_replicas=4)
    assert desired_replicas(policy, Inputs(0, 0.0, 1, rates(calls=0.0))).desired == 2


def test_window_quantile_interpolates_inside_the_bucket() -> None:
    before = {0.1: 0.0, 0.5: 0.0, 1.0: 0.0, math.inf: 0.0}
    after = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert quantile(before, after, 0.95) == 0.75  # rank 95 is halfway through (0.5, 1.0]
    assert quantile(after, after, 0.95) is None  # nothing observed in the window
