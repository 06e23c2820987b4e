"""Compare policies on one demand trace, beside the two baselines every team asks about: always-on
sized for the peak (never overflows) and API-only (every request at the overflow tier's price)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from margin.planner.amounts import cents
from margin.planner.fleet.policy import FleetPolicy
from margin.planner.fleet.simulate import PolicyResult, simulate
from margin.planner.fleet.trace import Demand


@dataclass(frozen=True)
class Baselines:
    always_on_replicas: int
    always_on_gpu_hours: Decimal
    always_on_usd: Decimal
    api_only_usd: Decimal | None  # None: the policy has no overflow tier to price it


@dataclass(frozen=True)
class Comparison:
    minutes: int
    results: tuple[PolicyResult, ...]
    baselines: dict[str, Baselines]  # by policy name: sized and priced with that policy's numbers


def baselines(policy: FleetPolicy, demand: Demand) -> Baselines:
    """Always-on at peak: enough replicas at full throughput for the busiest minute, all month."""
    peak = int(demand.max()) if len(demand) else 0
    replicas = max(1, math.ceil(peak / policy.requests_per_minute_per_replica - 1e-9))
    replica_minutes = replicas * len(demand)
    api_price = policy.overflow_usd_per_request
    return Baselines(
        always_on_replicas=replicas,
        always_on_gpu_hours=Decimal(replica_minutes * policy.gpus_per_replica) / 60,
        always_on_usd=policy.usd_per_replica_minute() * replica_minutes,
        api_only_usd=None if api_price is None else api_price * int(demand.sum()),
    )


def compare(policies: list[FleetPolicy], demand: Demand, *, seed: int = 0) -> Comparison:
    return Comparison(
        minutes=len(demand),
        results=tuple(simulate(p, demand, seed=seed) for p in policies),
        baselines={p.name: baselines(p, demand) for p in policies},
    )


def as_json(comparison: Comparison) -> dict[str, Any]:
    """Amounts as strings of cents (never floats), counts as integers."""
    rows = []
    for result in comparison.results:
        base = comparison.baselines[result.policy]
        rows.append(
            {
                "policy": result.policy,
                "offered": result.offered,
                "served": result.served,
                "overflowed": result.overflowed,
                "rejected": result.rejected,
                "late": result.late,
                "p95_wait_min": result.p95_wait_min,
                "gpu_hours": str(result.gpu_hours.quantize(Decimal("0.01"))),
                "gpu_usd": str(cents(result.gpu_usd)),
                "overflow_usd": str(cents(result.overflow_usd)),
                "total_usd": str(cents(result.total_usd)),
                "peak_replicas": result.peak_replicas,
                "always_on_replicas": base.always_on_replicas,
                "always_on_gpu_hours": str(base.always_on_gpu_hours.quantize(Decimal("0.01"))),
                "always_on_usd": str(cents(base.always_on_usd)),
                "api_only_usd": None if base.api_only_usd is None else str(cents(base.api_only_usd)),
            }
        )
    return {"minutes": comparison.minutes, "policies": rows}


COLUMNS = (
    ("policy", "policy"),
    ("gpu_hours", "GPU-h"),
    ("total_usd", "total $"),
    ("overflowed", "overflowed"),
    ("rejected", "rejected"),
    ("late", "late"),
    ("p95_wait_min", "p95 wait min"),
    ("peak_replicas", "peak"),
    ("always_on_usd", "always-on $"),
    ("api_only_usd", "API-only $"),
)


def as_table(comparison: Comparison) -> str:
    rows = [
        [str(row[key]) if row[key] is not None else "-" for key, _ in COLUMNS]
        for row in as_json(comparison)["policies"]
    ]
    header = [title for _, title in COLUMNS]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in [header, *rows]]
    return "\n".join(lines)
