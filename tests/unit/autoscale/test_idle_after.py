"""scale_to_zero's idle_after_s in the desired replica count (margin.autoscale.policy.with_idle_after):
a request within idle_after_s keeps one replica even when the window asks for none, idle_after_s
without a request asks for min_replicas even while the window still counts calls; and the standby's
state gauge (cold after idle_after_s, warming, drained, ready) with the wake counter."""

from __future__ import annotations

from margin.autoscale.policy import Decision, Inputs, desired_replicas, with_idle_after
from margin.autoscale.service import Autoscaler
from margin.autoscale.standby import Standby
from margin.autoscale.standby_metrics import StandbyCollector
from margin.autoscale.window import Rates
from margin.config.autoscale import AutoscalingConfig, DeploymentScaling
from margin.config.scale_to_zero import ScaleToZeroConfig
from margin.metrics import Metrics

POLICY = DeploymentScaling(target_queue_per_replica=8, min_replicas=0, max_replicas=4)
BUSY = Rates(seconds=60.0, attempts_per_s=0.5, unserved_per_s=0.0, tokens_in_per_s=1.0, tokens_out_per_s=1.0,
             ttft_p95_s=None, latency_p95_s=None)  # fmt: skip


def test_idle_past_idle_after_asks_for_zero_even_with_calls_in_the_window() -> None:
    window = desired_replicas(POLICY, Inputs(0, None, 0, BUSY))
    assert window.desired == 1 and window.reason == "demand"
    idle = with_idle_after(POLICY, window, idle_s=31.0, idle_after_s=30.0, in_flight=0)
    assert (idle.desired, idle.reason) == (0, "idle_after")
    assert with_idle_after(POLICY, window, idle_s=None, idle_after_s=30.0, in_flight=0).desired == 0
    busy = with_idle_after(POLICY, window, idle_s=31.0, idle_after_s=30.0, in_flight=2)  # calls still open
    assert busy == window


def test_a_recent_request_keeps_one_replica_when_the_window_asks_for_none() -> None:
    quiet = Decision(0, 0.0, "margin", "idle")
    kept = with_idle_after(POLICY, quiet, idle_s=5.0, idle_after_s=30.0, in_flight=0)
    assert (kept.desired, kept.reason) == (1, "recent_request")
    three = Decision(3, 20.0, "upstream", "queue")
    assert with_idle_after(POLICY, three, idle_s=5.0, idle_after_s=30.0, in_flight=0) == three


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def never(name: str) -> bool:
    return False


async def page(url: str, timeout_s: float) -> str:
    raise OSError("no page")


async def test_the_autoscaler_follows_the_standbys_last_request() -> None:
    clock = Clock()
    config = ScaleToZeroConfig.model_validate({"idle_after_s": 30})
    standby = Standby({"gpu": config}, probe=never, wake=lambda n, b: None, clock=clock, names=["api", "gpu"])
    scaling = AutoscalingConfig(window_s=3600, deployments={"gpu": POLICY})  # a window far longer than idle_after_s
    autoscaler = Autoscaler(scaling, Metrics(), in_flight={}, unserved={}, known={"gpu", "api"}, fetch=page,
                            clock=clock, idle_after={"gpu": 30.0}, idle_s=standby.idle_s)  # fmt: skip
    collector = StandbyCollector(standby)
    await autoscaler.tick()
    assert autoscaler.signals["gpu"].decision.reason == "idle_after"  # no request since start
    assert states(collector) == {"api": "ready", "gpu": "cold"}
    assert await standby.admit("gpu", "interactive") is None
    clock.now += 10
    await autoscaler.tick()
    assert (autoscaler.signals["gpu"].decision.desired, autoscaler.signals["gpu"].decision.reason) == (
        1, "recent_request")  # fmt: skip
    assert states(collector)["gpu"] == "ready"
    clock.now += 25  # 35 s since the request
    await autoscaler.tick()
    assert autoscaler.signals["gpu"].decision.desired == 0
    assert states(collector)["gpu"] == "cold"
    standby.drain("api", reason="spot", by="admin")
    assert states(collector)["api"] == "drained"


def states(collector: StandbyCollector) -> dict[str, str]:
    gauge, wakes, _waiting = list(collector.collect())
    assert [s.labels["deployment"] for s in wakes.samples] == ["gpu"]  # scale-to-zero deployments only
    on = {s.labels["deployment"]: s.labels["state"] for s in gauge.samples if s.value == 1.0}
    assert len(gauge.samples) == 4 * len(on)  # one sample per state, exactly one of them 1
    return on
