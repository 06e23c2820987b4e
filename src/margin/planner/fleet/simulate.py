"""The discrete-event core: one minute per step, a reactive autoscaler, cold starts, spot
interruptions, a bounded wait queue, overflow to an API tier. Every offered request ends served,
overflowed or rejected: what the ready replicas cannot take waits up to `max_wait_min`, then goes to
the overflow tier (or is rejected when the policy has none). Money is Decimal, counted from whole replica-minutes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from margin.planner.fleet.policy import FleetPolicy
from margin.planner.fleet.queue import WaitQueue
from margin.planner.fleet.trace import Demand

Series = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    offered: int
    served: int
    overflowed: int
    rejected: int
    late: int  # served after waiting a minute or more
    p95_wait_min: int
    replica_minutes: int
    gpu_hours: Decimal
    gpu_usd: Decimal
    overflow_usd: Decimal
    peak_replicas: int
    replicas: Series  # paid replicas (serving or starting) per minute, for the chart
    gave_up: Series  # requests overflowed or rejected per minute, for the chart

    @property
    def total_usd(self) -> Decimal:
        return self.gpu_usd + self.overflow_usd


@dataclass
class _Fleet:
    ready: int
    pending: Series  # replicas that start serving at each minute
    starting: int = 0  # scaled up, not serving yet (paid)
    below_for: int = 0


def desired_replicas(policy: FleetPolicy, requests: int) -> int:
    """Replicas the autoscaler wants for `requests` in a minute, at the target utilization."""
    wanted = math.ceil(requests / (policy.requests_per_minute_per_replica * policy.target_utilization) - 1e-9)
    return min(policy.max_replicas, max(policy.min_replicas, wanted))


def simulate(policy: FleetPolicy, demand: Demand, *, seed: int = 0) -> PolicyResult:
    """Replay `demand` (requests per minute) against `policy`."""
    minutes = len(demand)
    rng = np.random.default_rng(seed)
    fleet = _Fleet(ready=desired_replicas(policy, int(demand[0])), pending=np.zeros(minutes + 2, dtype=np.int64))
    queue = WaitQueue(policy.max_wait_min)
    lag = max(policy.cold_start_min, 1)  # a decision takes effect from the next minute at the earliest
    served = gave_up = 0
    paid = np.zeros(minutes, dtype=np.int64)
    spilled = np.zeros(minutes, dtype=np.int64)
    interrupt_p = min(1.0, policy.spot_interruptions_per_hour / 60)
    for minute in range(minutes):
        arrived = int(fleet.pending[minute])
        fleet.ready += arrived
        fleet.starting -= arrived
        if interrupt_p > 0 and fleet.ready:
            fleet.ready -= int(rng.binomial(round(fleet.ready * policy.spot_share), interrupt_p))
        offered = int(demand[minute])
        took, left = queue.step(minute, offered, int(fleet.ready * policy.requests_per_minute_per_replica))
        served, gave_up = served + took, gave_up + left
        spilled[minute] = left
        paid[minute] = fleet.ready + fleet.starting
        _scale(policy, fleet, offered + queue.backlog, min(minutes + 1, minute + lag))
    left = queue.drain()
    if minutes:
        spilled[-1] += left
    return _result(policy, demand, served, gave_up + left, queue, (paid, spilled))


def _scale(policy: FleetPolicy, fleet: _Fleet, offered: int, ready_at: int) -> None:
    """Scale up at once (the new replicas serve after the cold start); scale down only after
    `scale_down_after_min` minutes in a row wanting fewer."""
    desired = desired_replicas(policy, offered)
    total = fleet.ready + fleet.starting
    if desired > total:
        fleet.pending[ready_at] += desired - total
        fleet.starting += desired - total
        fleet.below_for = 0
    elif desired < total:
        fleet.below_for += 1
        if fleet.below_for > policy.scale_down_after_min:
            fleet.ready -= min(fleet.ready, total - desired)
            fleet.below_for = 0
    else:
        fleet.below_for = 0


def _result(
    policy: FleetPolicy, demand: Demand, served: int, gave_up: int, queue: WaitQueue, series: tuple[Series, Series]
) -> PolicyResult:
    paid, spilled = series
    replica_minutes = int(paid.sum())
    has_overflow = policy.overflow_usd_per_request is not None
    overflowed = gave_up if has_overflow else 0
    return PolicyResult(
        policy=policy.name,
        offered=int(demand.sum()),
        served=served,
        overflowed=overflowed,
        rejected=gave_up - overflowed,
        late=queue.late(),
        p95_wait_min=queue.p95_wait_min(),
        replica_minutes=replica_minutes,
        gpu_hours=Decimal(replica_minutes * policy.gpus_per_replica) / 60,
        gpu_usd=policy.usd_per_replica_minute() * replica_minutes,
        overflow_usd=(policy.overflow_usd_per_request or Decimal(0)) * overflowed,
        peak_replicas=int(paid.max()) if len(paid) else 0,
        replicas=paid,
        gave_up=spilled,
    )
