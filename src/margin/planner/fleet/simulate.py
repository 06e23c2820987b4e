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
    leaving: Series  # spot replicas under notice that stop at each minute
    starting: int = 0  # scaled up, not serving yet (paid)
    noticed: int = 0  # serving, but under an interruption notice (the autoscaler has replaced them)
    below_for: int = 0

    def tick(self, minute: int) -> None:
        arrived, gone = int(self.pending[minute]), int(self.leaving[minute])
        self.ready += arrived - gone
        self.starting -= arrived
        self.noticed -= gone

    def interrupt(self, count: int, *, notice_ends: int | None, ready_at: int) -> None:
        """`count` spot replicas get an interruption notice. Without warning they are gone at once
        (the autoscaler replaces them as it sees the shortfall); with one, replacements start now
        and the noticed replicas serve until the notice ends."""
        if notice_ends is None:
            self.ready -= count
            return
        self.leaving[notice_ends] += count
        self.noticed += count
        self.pending[ready_at] += count
        self.starting += count

    @property
    def counted(self) -> int:
        """What the autoscaler counts: serving (less those leaving) and starting."""
        return self.ready - self.noticed + self.starting


def desired_replicas(policy: FleetPolicy, requests: int) -> int:
    """Replicas the autoscaler wants for `requests` in a minute, at the target utilization."""
    wanted = math.ceil(requests / (policy.requests_per_minute_per_replica * policy.target_utilization) - 1e-9)
    return min(policy.max_replicas, max(policy.min_replicas, wanted))


def simulate(policy: FleetPolicy, demand: Demand, *, seed: int = 0) -> PolicyResult:
    """Replay `demand` (requests per minute) against `policy`."""
    minutes = len(demand)
    rng = np.random.default_rng(seed)
    end = minutes + 1  # events past the trace land here and are never read
    fleet = _Fleet(desired_replicas(policy, int(demand[0])), np.zeros(end + 1, np.int64), np.zeros(end + 1, np.int64))
    queue = WaitQueue(policy.max_wait_min)
    lag = max(policy.cold_start_min, 1)  # a decision takes effect from the next minute at the earliest
    served = gave_up = 0
    paid = np.zeros(minutes, dtype=np.int64)
    spilled = np.zeros(minutes, dtype=np.int64)
    interrupt_p = min(1.0, policy.spot_interruptions_per_hour / 60)
    for minute in range(minutes):
        fleet.tick(minute)
        if interrupt_p > 0 and fleet.ready > fleet.noticed:
            notices = int(rng.binomial(round((fleet.ready - fleet.noticed) * policy.spot_share), interrupt_p))
            warned = min(end, minute + policy.spot_warning_min) if policy.spot_warning_min else None
            fleet.interrupt(notices, notice_ends=warned, ready_at=min(end, minute + lag))
        offered = int(demand[minute])
        took, left = queue.step(minute, offered, int(fleet.ready * policy.requests_per_minute_per_replica))
        served, gave_up = served + took, gave_up + left
        spilled[minute] = left
        paid[minute] = fleet.ready + fleet.starting
        _scale(policy, fleet, offered + queue.backlog, min(end, minute + lag))
    left = queue.drain()
    if minutes:
        spilled[-1] += left
    return _result(policy, demand, served, gave_up + left, queue, (paid, spilled))


def _scale(policy: FleetPolicy, fleet: _Fleet, offered: int, ready_at: int) -> None:
    """Scale up at once (the new replicas serve after the cold start); scale down only after
    `scale_down_after_min` minutes in a row wanting fewer."""
    desired = desired_replicas(policy, offered)
    total = fleet.counted
    if desired > total:
        fleet.pending[ready_at] += desired - total
        fleet.starting += desired - total
        fleet.below_for = 0
    elif desired < total:
        fleet.below_for += 1
        if fleet.below_for > policy.scale_down_after_min:
            fleet.ready -= min(fleet.ready - fleet.noticed, total - desired)
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
