"""The discrete-event core: one minute per step, a reactive autoscaler, cold starts, spot
interruptions, overflow to an API tier. Every offered request ends served, overflowed or rejected
(no queue: what the ready replicas cannot take in its minute goes to the overflow tier, or is
rejected when the policy has none). Money is Decimal, counted from whole replica-minutes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from margin.planner.fleet.policy import FleetPolicy
from margin.planner.fleet.trace import Demand

Series = npt.NDArray[np.int64]


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    offered: int
    served: int
    overflowed: int
    rejected: int
    replica_minutes: int
    gpu_hours: Decimal
    gpu_usd: Decimal
    overflow_usd: Decimal
    peak_replicas: int
    replicas: Series  # paid replicas (serving or starting) per minute, for the chart

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
    lag = max(policy.cold_start_min, 1)  # a decision takes effect from the next minute at the earliest
    served = overflowed = rejected = 0
    paid = np.zeros(minutes, dtype=np.int64)
    interrupt_p = min(1.0, policy.spot_interruptions_per_hour / 60)
    for minute in range(minutes):
        arrived = int(fleet.pending[minute])
        fleet.ready += arrived
        fleet.starting -= arrived
        if interrupt_p > 0 and fleet.ready:
            fleet.ready -= int(rng.binomial(round(fleet.ready * policy.spot_share), interrupt_p))
        offered = int(demand[minute])
        took = min(offered, int(fleet.ready * policy.requests_per_minute_per_replica))
        excess = offered - took
        served += took
        if policy.overflow_usd_per_request is not None:
            overflowed += excess
        else:
            rejected += excess
        paid[minute] = fleet.ready + fleet.starting
        _scale(policy, fleet, offered, min(minutes + 1, minute + lag))
    return _result(policy, demand, served, overflowed, rejected, paid)


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
    policy: FleetPolicy, demand: Demand, served: int, overflowed: int, rejected: int, paid: Series
) -> PolicyResult:
    replica_minutes = int(paid.sum())
    overflow_price = policy.overflow_usd_per_request or Decimal(0)
    return PolicyResult(
        policy=policy.name,
        offered=int(demand.sum()),
        served=served,
        overflowed=overflowed,
        rejected=rejected,
        replica_minutes=replica_minutes,
        gpu_hours=Decimal(replica_minutes * policy.gpus_per_replica) / 60,
        gpu_usd=policy.usd_per_replica_minute() * replica_minutes,
        overflow_usd=overflow_price * overflowed,
        peak_replicas=int(paid.max()) if len(paid) else 0,
        replicas=paid,
    )
