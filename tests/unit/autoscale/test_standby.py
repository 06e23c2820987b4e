"""margin.autoscale.standby: cold periods, the wake signal once per period, each endpoint class's
wait, warming by a health probe or an answer, and drain; and `scale_to_zero:`'s config errors."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from margin.autoscale.standby import Standby
from margin.autoscale.standby_metrics import StandbyCollector
from margin.config import parse_config
from margin.config.scale_to_zero import ScaleToZeroConfig
from margin.errors import ConfigError


class Upstream:
    """What the standby may touch: a health answer the test sets, and the wake bodies it sent."""

    def __init__(self) -> None:
        self.healthy = False
        self.probes = 0
        self.wakes: list[tuple[str, dict[str, object]]] = []

    async def probe(self, name: str) -> bool:
        self.probes += 1
        return self.healthy

    def wake(self, name: str, body: bytes) -> None:
        self.wakes.append((name, orjson.loads(body)))


def registry_of(collector: StandbyCollector) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def standby(upstream: Upstream, **settings: object) -> Standby:
    config = ScaleToZeroConfig.model_validate(
        {"wake": "webhook", "webhook_url": "http://127.0.0.1:1/wake", "probe_interval_s": 0.02, **settings}
    )
    return Standby({"gpu": config}, probe=upstream.probe, wake=upstream.wake)


async def test_a_cold_period_wakes_once_and_ends_with_a_healthy_probe() -> None:
    up = Upstream()
    s = standby(up)
    assert await s.admit("gpu", "interactive") is None  # never seen cold: call it
    s.unreachable("gpu")
    s.unreachable("gpu")  # the same cold period
    assert [name for name, _ in up.wakes] == ["gpu"] and up.wakes[0][1]["event"] == "wake"
    assert await s.admit("gpu", "interactive") == "cold"  # interactive waits 0 s: overflow at once
    await asyncio.sleep(0.1)
    assert s.describe("gpu")["state"] == "cold" and up.probes >= 2
    up.healthy = True
    await asyncio.sleep(0.1)
    assert s.describe("gpu")["state"] == "warm" and await s.admit("gpu", "interactive") is None
    s.unreachable("gpu")  # a new cold period: a new wake
    assert len(up.wakes) == 2 and s.describe("gpu")["cold_periods"] == 2
    await s.stop()


async def test_one_replica_of_several_failing_is_not_a_cold_start() -> None:
    up = Upstream()
    live = {"gpu": True}
    config = ScaleToZeroConfig.model_validate({"probe_interval_s": 0.02})
    s = Standby({"gpu": config}, probe=up.probe, wake=up.wake, in_rotation=live.__getitem__)
    s.unreachable("gpu")
    assert s.describe("gpu")["state"] == "warm"
    live["gpu"] = False  # the last replica is out too
    s.unreachable("gpu")
    assert s.describe("gpu")["state"] == "cold" and not up.wakes  # wake: none (the demand metric wakes it)
    await s.stop()


async def test_each_endpoint_class_waits_its_own_limit() -> None:
    up = Upstream()
    s = standby(up, wait_max_s={"interactive": 0.05, "batch": 5})
    s.unreachable("gpu")
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await s.admit("gpu", "interactive") == "cold"  # waited its 0.05 s, then overflows
    assert 0.04 <= loop.time() - started < 1
    assert s.waiting("gpu") == 0
    batch = asyncio.create_task(s.admit("gpu", "batch"))
    await asyncio.sleep(0.1)
    assert not batch.done()  # still waiting for the deployment
    assert s.waiting("gpu") == 1 and s.describe("gpu")["waiting"] == 1  # margin's own queue for it
    lines = generate_latest(registry_of(StandbyCollector(s))).decode()
    assert 'margin_deployment_requests_waiting{deployment="gpu"} 1.0' in lines
    s.answered("gpu")  # an answer (or a healthy probe) warms it: the waiter calls it
    assert await batch is None
    assert s.describe("gpu")["waited"] == 2 and s.describe("gpu")["skipped_cold"] == 1
    assert s.waiting("gpu") == 0  # the waiter left the queue when it warmed
    await s.stop()


async def test_drain_skips_new_requests_until_undrained_and_ignores_unknown_cold() -> None:
    up = Upstream()
    s = standby(up)
    s.unreachable("api")  # not a scale-to-zero deployment: a connection failure is just a failure
    assert s.describe("api")["state"] == "warm" and not up.wakes
    s.drain("api", reason="spot", by="admin", not_after=123.0)
    assert await s.admit("api", "interactive") == "drained"
    drained = s.describe("api")["drained"]
    assert isinstance(drained, dict) and (drained["reason"], drained["by"], drained["not_after"]) == (
        "spot",
        "admin",
        123.0,
    )
    s.undrain("api")
    assert await s.admit("api", "interactive") is None and s.describe("api")["skipped_drained"] == 1
    await s.stop()


BASE = """
deployments:
  - name: gpu
    provider: openai_compat
    model: m
    base_url: http://127.0.0.1:1/v1
    scale_to_zero: {settings}
  - {{name: api, provider: fake, model: m}}
models:
  - name: chat
    tiers:
      - {{name: self, deployments: [gpu]}}
      - {{name: api, deployments: [{after}]}}
"""


@pytest.mark.parametrize(
    ("settings", "after", "message"),
    [
        ("{wake: webhook}", "api", "wake: webhook needs webhook_url"),
        ("{wake: none, webhook_url: env:VAR}", "api", "webhook_url is only used with wake: webhook"),
        ("{idle_after_s: 60, wait_max_s: {interactive: 1, bulk: 2}}", "api", "bulk"),
        ("{colds_start_s: 5}", "api", "colds_start_s"),
        ("{wait_max_s: {interactive: -1}}", "api", "interactive"),
        ("{}", "gpu", "deployment 'gpu' has scale_to_zero but nothing to overflow"),
    ],
)
def test_bad_scale_to_zero_settings_name_the_field(settings: str, after: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE.format(settings=settings, after=after))
    assert message in str(caught.value)
    if message != "deployment 'gpu' has scale_to_zero but nothing to overflow":
        assert "scale_to_zero" in str(caught.value)  # the place


def test_scale_to_zero_needs_a_model_server() -> None:
    text = BASE.format(settings="{}", after="api").replace("provider: openai_compat", "provider: fake")
    with pytest.raises(ConfigError, match="scale_to_zero needs provider: openai_compat"):
        parse_config(text.replace("    base_url: http://127.0.0.1:1/v1\n", ""))


def test_a_good_config_parses() -> None:
    config = parse_config(BASE.format(settings="{wait_max_s: {batch: 30}}", after="api"))
    settings = config.deployments[0].scale_to_zero
    assert settings is not None and settings.wait_max_s.batch == 30 and settings.wake == "none"
