"""Self-hosting over time: the fleet simulator (margin.planner.fleet) on the measured demand.

The planner's figures are steady-state; the simulator replays demand minute by minute against
autoscaling policies built from the plan's cheapest feasible self-hosted options (cold starts,
a bounded wait, overflow to the class's API). The demand is the recorded traffic left after the
cache, counted per minute from the timestamps (the last 31 days at most), times each volume
multiplier. The simulated cost covers the recorded span; `monthly_usd` scales it to 30 days.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from margin.errors import ConfigError
from margin.planner.fleet.from_plan import policies_from_plan
from margin.planner.fleet.report import compare
from margin.planner.fleet.trace import Demand
from margin.planner.plan import Plan
from margin.whatif.traffic import Record

MAX_MINUTES = 31 * 1440
MONTH_MINUTES = 30 * 1440


@dataclass(frozen=True)
class FleetChoice:
    multiplier: float
    policy: str  # the cheapest simulated policy
    minutes: int  # the simulated span
    total_usd: Decimal  # GPUs and overflow over the span
    monthly_usd: Decimal  # total_usd scaled to 30 days
    overflowed: int
    rejected: int
    always_on_usd: Decimal  # the same policy always on, sized for the peak, over the span
    api_only_usd: Decimal | None  # every request at the class's API, over the span


def minute_demand(records: Sequence[Record]) -> Demand:
    """Requests per minute from the first to the last timestamp (the last MAX_MINUTES at most)."""
    if not records:
        return np.zeros(0, dtype=np.int64)
    stamps = np.fromiter((r.timestamp for r in records), dtype=np.float64, count=len(records))
    start = max(float(stamps.min()), float(stamps.max()) - MAX_MINUTES * 60 + 60)
    minutes = ((stamps[stamps >= start] - start) // 60).astype(np.int64)
    return np.bincount(minutes).astype(np.int64)


def simulate_fleet(built: Plan, remaining: Sequence[Record], multipliers: Sequence[float]) -> list[FleetChoice]:
    """The cheapest policy at each multiplier; ConfigError when the plan has nothing to simulate."""
    demand = minute_demand(remaining)
    if not demand.size or not demand.sum():
        raise ConfigError("no requests left after the cache: nothing to simulate")
    policies = policies_from_plan(built)
    choices: list[FleetChoice] = []
    for multiplier in multipliers:
        scaled = np.rint(demand * multiplier).astype(np.int64)
        comparison = compare(policies, scaled)
        best = min(comparison.results, key=lambda r: r.total_usd)
        base = comparison.baselines[best.policy]
        choices.append(
            FleetChoice(
                multiplier=multiplier,
                policy=best.policy,
                minutes=comparison.minutes,
                total_usd=best.total_usd,
                monthly_usd=best.total_usd * MONTH_MINUTES / comparison.minutes,
                overflowed=best.overflowed,
                rejected=best.rejected,
                always_on_usd=base.always_on_usd,
                api_only_usd=base.api_only_usd,
            )
        )
    return choices
