"""Crossover: the smallest daily volume at which a hosted option costs no more than the comparison API, or
"never" with the binding reason, plus the break-even utilization.

Self-hosted cost is a step function of volume (whole replicas, whole instances); the API is linear. The search
walks a geometric grid (40 points per decade) to find the first grid volume where self-hosting is no
dearer, then
finds the exact infimum inside that bracket by visiting every replica breakpoint. Defined this way the
crossover
moves monotonically with every price: raising a GPU price can only delay it, raising an API price only
advance it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from margin.planner.amounts import to_decimal
from margin.planner.capacity import ReplicaCapacity
from margin.planner.catalog import Catalog
from margin.planner.costing import HostedPricing, tokens_per_month, variable_lines
from margin.planner.demand import ClassDemand

GRID_LOW, GRID_HIGH, POINTS_PER_DECADE = 1e-3, 1e4, 40
MAX_BREAKPOINTS = 5000
SLACK = 1e-9


@dataclass(frozen=True)
class Crossover:
    option_id: str
    class_name: str
    compare_to: str
    requests_per_day: float | None
    growth_multiple: float | None
    tokens_per_month: Decimal | None
    reason: str
    break_even_utilization: float | None


@dataclass(frozen=True)
class _Curve:
    """Self-hosted and API monthly cost as functions of requests/day for one option and demand."""

    demand: ClassDemand
    capacity: ReplicaCapacity
    pricing: HostedPricing
    api_usd_per_request: Decimal
    catalog: Catalog

    @property
    def days(self) -> Decimal:
        return to_decimal(self.catalog.assumptions.hours_per_month.value) / 24

    def self_cost(self, volume: float) -> Decimal:
        ih, peak = schedule_grid(np.array([volume]), self.demand, self.capacity, self.pricing)
        return self.money(int(ih[0]), int(peak[0]), volume)

    def money(self, instance_hours: int, peak: int, volume: float) -> Decimal:
        lines = variable_lines(self.pricing, instance_hours, peak, volume, self.days) + self.pricing.fixed_lines
        return sum((line.amount for line in lines), Decimal(0))

    def api_cost(self, volume: float) -> Decimal:
        return self.api_usd_per_request * to_decimal(volume) * self.days

    def approximate_gap(
        self, volumes: npt.NDArray[np.float64], hours: npt.NDArray[np.int64], peaks: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """(self - API) / API in floats: only a screen; every decision is re-checked in Decimal."""
        p = self.pricing
        fixed = float(sum((line.amount for line in p.fixed_lines), Decimal(0)))
        days = float(self.days)
        self_cost = (
            fixed
            + float(p.instance_usd_hr * p.hours_per_month / 24) * hours
            + float(p.storage_usd_per_replica) * peaks
            + float(p.egress_usd_per_request) * volumes * days
        )
        api = float(self.api_usd_per_request) * volumes * days
        return (self_cost - api) / api


def schedule_grid(
    volumes: npt.NDArray[np.float64], demand: ClassDemand, capacity: ReplicaCapacity, pricing: HostedPricing
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Instance-hours per day and peak replicas for each volume (vectorised twin of
    costing.replicas_for_load)."""
    shares = np.array(demand.hourly_shares)
    loads = volumes[:, None] * shares[None, :] / 3600.0
    per_replica = capacity.requests_per_s * pricing.target_utilization
    needed = np.maximum(pricing.min_replicas, np.ceil(loads / per_replica - SLACK)).astype(np.int64)
    idle = 0 if pricing.scale_to_zero else pricing.min_replicas
    replicas = np.where(loads <= 0, idle, needed)
    instances = -(-replicas // pricing.replicas_per_instance)
    return instances.sum(axis=1), replicas.max(axis=1)


def find_crossover(
    option_id: str,
    compare_to: str,
    capacity: ReplicaCapacity,
    demand: ClassDemand,
    pricing: HostedPricing,
    api_usd_per_request: Decimal,
    catalog: Catalog,
) -> Crossover:
    curve = _Curve(demand, capacity, pricing, api_usd_per_request, catalog)
    break_even = _break_even_utilization(curve)

    def result(volume: float | None, reason: str) -> Crossover:
        tokens = None if volume is None else tokens_per_month(demand.scaled(volume / demand.requests_per_day), catalog)
        multiple = None if volume is None else volume / demand.requests_per_day
        return Crossover(option_id, demand.name, compare_to, volume, multiple, tokens, reason, break_even)

    if not capacity.feasible:
        return result(None, f"never: {capacity.reason}")
    never = _never_reason(curve)
    if never:
        return result(None, never)
    volume = _search(curve)
    if volume is None:
        return result(None, f"beyond {GRID_HIGH:,.0f}x today's volume (fixed costs dominate)")
    return result(volume, "self-hosting no dearer from this volume")


def _replica_month(curve: _Curve) -> tuple[Decimal, Decimal]:
    """(monthly cost of one replica's share of an instance, API value of what it serves at target
    utilization)."""
    pricing = curve.pricing
    cost = pricing.instance_usd_hr / pricing.replicas_per_instance * pricing.hours_per_month
    served = to_decimal(curve.capacity.requests_per_s * pricing.target_utilization * 3600) * pricing.hours_per_month
    return cost, served * (curve.api_usd_per_request - pricing.egress_usd_per_request)


def _never_reason(curve: _Curve) -> str:
    cost, value = _replica_month(curve)
    if value > cost:
        return ""
    cap = curve.capacity
    hpm = curve.pricing.hours_per_month
    tokens = to_decimal(cap.requests_per_s * curve.pricing.target_utilization * 3600) * hpm
    tokens *= to_decimal(curve.demand.input_tokens.mean + curve.demand.output_tokens.mean)
    return (
        f"never: one replica ({cap.gpus} GPU) serves at most {tokens / 10**6:,.0f}M tokens/month at "
        f"{curve.pricing.target_utilization:.0%} utilization, worth ${value:,.2f} at the API's price, "
        f"less than its ${cost:,.2f} monthly instance cost"
    )


def _break_even_utilization(curve: _Curve) -> float | None:
    """Utilization at which a replica's GPU cost equals what the API would charge for its output (GPU
    only)."""
    if not curve.capacity.feasible or curve.capacity.requests_per_s <= 0:
        return None
    cost, value = _replica_month(curve)
    if value <= 0:
        return None
    return float(cost / (value / to_decimal(curve.pricing.target_utilization)))


def _search(curve: _Curve) -> float | None:
    today = curve.demand.requests_per_day
    decades = np.log10(GRID_HIGH / GRID_LOW)
    grid = today * GRID_LOW * 10 ** (np.arange(int(decades * POINTS_PER_DECADE) + 1) / POINTS_PER_DECADE)
    hours, peaks = schedule_grid(grid, curve.demand, curve.capacity, curve.pricing)
    gap = curve.approximate_gap(grid, hours, peaks)
    # Points the float screen calls cheaper, or too close to call, get the exact Decimal comparison.
    for index in np.flatnonzero(gap <= 1e-9).tolist():
        volume = float(grid[index])
        if curve.money(int(hours[index]), int(peaks[index]), volume) <= curve.api_cost(volume):
            return _refine(curve, float(grid[index - 1]) if index else 0.0, volume)
    return None


def _refine(curve: _Curve, low: float, high: float) -> float:
    """Exact infimum inside (low, high]: cost is constant between replica breakpoints except the linear
    egress."""
    points = _breakpoints(curve, low, high)
    if points is None:
        return high
    edges = [low, *points, high]
    slope = curve.api_usd_per_request - curve.pricing.egress_usd_per_request
    days = curve.days
    for left, right in pairwise(edges):
        egress = curve.pricing.egress_usd_per_request * to_decimal(right) * days
        steady = curve.self_cost(right) - egress
        start = float(steady / (slope * days))
        candidate = max(left, start)
        if candidate <= right:
            return candidate
    return high


def _breakpoints(curve: _Curve, low: float, high: float) -> list[float] | None:
    unit = curve.capacity.requests_per_s * curve.pricing.target_utilization * 3600
    found: set[float] = set()
    for share in curve.demand.hourly_shares:
        if share <= 0:
            continue
        step = unit / share
        first, last = int(low / step) + 1, int(high / step)
        if len(found) + max(0, last - first + 1) > MAX_BREAKPOINTS:
            return None
        found.update(n * step for n in range(first, last + 1) if low < n * step < high)
    return sorted(found)


def self_cost_curve(
    volumes: list[float],
    capacity: ReplicaCapacity,
    demand: ClassDemand,
    pricing: HostedPricing,
    catalog: Catalog,
) -> list[Decimal]:
    """Monthly cost of a hosted option at each daily volume (for charts)."""
    curve = _Curve(demand, capacity, pricing, Decimal(0), catalog)
    hours, peaks = schedule_grid(np.array(volumes), demand, capacity, pricing)
    return [curve.money(int(h), int(p), v) for v, h, p in zip(volumes, hours.tolist(), peaks.tolist(), strict=True)]
