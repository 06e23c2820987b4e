"""/readyz's deployment health: probed at most once per interval, one probe shared by every caller."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from margin.providers.base import Provider
from margin.providers.health_probes import HealthProbes


class Probed:
    def __init__(self, healthy: bool = True, delay_s: float = 0.02) -> None:
        self.healthy = healthy
        self.delay_s = delay_s
        self.probes = 0

    async def health(self) -> bool:
        self.probes += 1
        await asyncio.sleep(self.delay_s)
        return self.healthy


def probes_of(providers: dict[str, Probed], **options: Any) -> HealthProbes:
    return HealthProbes(cast(dict[str, Provider], providers), **options)


async def test_concurrent_callers_share_one_probe_per_deployment() -> None:
    up, down = Probed(), Probed(healthy=False)
    probes = probes_of({"up": up, "down": down}, interval_s=60)
    answers = await asyncio.gather(*(probes.health() for _ in range(50)))
    assert all(a == {"up": True, "down": False} for a in answers)
    assert (up.probes, down.probes, probes.probes_started) == (1, 1, 2)


async def test_answers_come_from_the_last_probe_until_the_interval_passes() -> None:
    now = [100.0]
    upstream = Probed(delay_s=0)
    probes = probes_of({"d": upstream}, interval_s=5, clock=lambda: now[0])
    await probes.health()
    upstream.healthy = False
    now[0] += 4.9
    assert await probes.health() == {"d": True} and upstream.probes == 1  # still the last answer
    now[0] += 0.2
    assert await probes.health() == {"d": False} and upstream.probes == 2


async def test_a_probe_slower_than_its_timeout_is_unhealthy() -> None:
    probes = probes_of({"slow": Probed(delay_s=1.0)}, interval_s=60, timeout_s=0.05)
    assert await probes.health() == {"slow": False}


async def test_a_caller_that_leaves_does_not_cancel_the_probe_the_others_wait_for() -> None:
    upstream = Probed(delay_s=0.1)
    probes = probes_of({"d": upstream}, interval_s=60)
    leaving = asyncio.create_task(probes.health())
    staying = asyncio.create_task(probes.health())
    await asyncio.sleep(0.02)
    leaving.cancel()
    assert await staying == {"d": True} and upstream.probes == 1
