"""The runtime monitor (issue 27): collection pauses and event-loop lag reach /metrics as histograms,
the start-up heap is frozen and the thresholds set while the app runs, and shutting down gives the
collector back as it was."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from margin.api.runtime import GcPauses, RuntimeMonitor, WindowMax
from margin.app import create_app
from margin.config import parse_config
from margin.config.runtime import DEFAULT_GC_THRESHOLDS, RuntimeConfig
from margin.storage.memory import MemoryKeyStore

CONFIG = """
data_dir: {data}
server: {{runtime: {{loop_lag_interval_s: 0.02{runtime}}}}}
deployments:
  - {{name: big, provider: fake, model: big, price: {{input: "1", output: "2"}}}}
models:
  - {{name: chat, deployments: [big]}}
"""


def sample(registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None) -> float:
    return registry.get_sample_value(name, labels or {}) or 0.0


async def test_a_blocked_loop_shows_as_lag_and_a_full_collection_as_a_pause() -> None:
    registry = CollectorRegistry()
    monitor = RuntimeMonitor(RuntimeConfig(loop_lag_interval_s=0.01, gc_freeze=False), registry)
    monitor.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.15)  # what a synchronous call on the loop does to every request
        gc.collect()
        await asyncio.sleep(0.05)
    finally:
        await monitor.stop()
    assert sample(registry, "margin_event_loop_lag_seconds_count") >= 3
    over_100ms = sample(registry, "margin_event_loop_lag_seconds_count") - sample(
        registry, "margin_event_loop_lag_seconds_bucket", {"le": "0.1"}
    )
    assert over_100ms == 1
    assert sample(registry, "margin_event_loop_lag_max_seconds") >= 0.14
    assert sample(registry, "margin_gc_pause_seconds_count", {"generation": "2"}) >= 1
    assert sample(registry, "margin_gc_pause_max_seconds") > 0


async def test_the_collector_is_tuned_while_running_and_restored_after() -> None:
    before = gc.get_threshold()
    monitor = RuntimeMonitor(RuntimeConfig(), CollectorRegistry())
    monitor.start()
    try:
        assert gc.get_threshold() == DEFAULT_GC_THRESHOLDS
        assert gc.get_freeze_count() > 10_000  # modules, classes, the app: out of every collection's walk
        assert monitor.pauses in gc.callbacks
    finally:
        await monitor.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert monitor.pauses not in gc.callbacks


async def test_python_defaults_when_asked() -> None:
    before = gc.get_threshold()
    monitor = RuntimeMonitor(RuntimeConfig(gc_thresholds=None, gc_freeze=False), CollectorRegistry())
    monitor.start()
    try:
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0
    finally:
        await monitor.stop()


def test_pauses_are_kept_bounded_until_drained() -> None:
    pauses = GcPauses(kept=3)
    for generation in range(5):
        pauses("start", {"generation": generation})
        pauses("stop", {"generation": generation})
    drained = pauses.drain()
    assert [g for g, _ in drained] == [2, 3, 4]
    assert all(0 <= seconds < 0.1 for _, seconds in drained)
    assert pauses.drain() == []


def test_window_max_forgets_a_spike_two_windows_later() -> None:
    window = WindowMax(10.0, now=0.0)
    assert window.add(0.3, now=1.0) == 0.3
    assert window.add(0.01, now=11.0) == 0.3  # the previous window's spike is still the max
    assert window.add(0.02, now=21.5) == 0.02
    assert window.add(0.01, now=45.0) == 0.01  # a silent window in between forgets everything


@pytest.mark.parametrize("runtime", ["", ", gc_freeze: false, gc_thresholds: null"])
async def test_the_app_serves_both_histograms_on_metrics(tmp_path: Path, runtime: str) -> None:
    config = parse_config(CONFIG.format(data=tmp_path, runtime=runtime))
    app = create_app(config, key_store=MemoryKeyStore())
    async with app.router.lifespan_context(app):
        frozen = gc.get_freeze_count()
        gc.collect()
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            page = (await client.get("/metrics")).text
    assert (frozen > 0) == (runtime == "")
    assert 'margin_gc_pause_seconds_count{generation="2"}' in page
    lags = [line for line in page.splitlines() if line.startswith("margin_event_loop_lag_seconds_count")]
    assert lags and float(lags[0].split()[-1]) >= 2
    assert "margin_event_loop_lag_max_seconds" in page
    assert gc.get_freeze_count() == 0
