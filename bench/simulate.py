"""How long `margin simulate` takes: one month of one-minute buckets (43,200) for 10 policies
(target: under 10 s on the 2-core dev machine). Run: .venv/bin/python bench/simulate.py"""

from __future__ import annotations

import time
from decimal import Decimal

from margin.planner.fleet.policy import FleetPolicy
from margin.planner.fleet.report import compare
from margin.planner.fleet.trace import DiurnalProfile


def policies() -> list[FleetPolicy]:
    return [
        FleetPolicy(
            name=f"p{i}",
            usd_per_gpu_hour=Decimal("2.50"),
            spot_usd_per_gpu_hour=Decimal("0.90"),
            spot_share=0.5,
            spot_interruptions_per_hour=0.05,
            requests_per_minute_per_replica=60,
            cold_start_min=3 + i,
            min_replicas=0,
            max_replicas=20,
            target_utilization=0.5 + i * 0.05,
            overflow_usd_per_request=Decimal("0.002"),
        )
        for i in range(10)
    ]


def main() -> None:
    demand = DiurnalProfile(days=30, peak_rpm=600, quiet_hours=(1, 6)).demand()
    started = time.perf_counter()
    comparison = compare(policies(), demand)
    elapsed = time.perf_counter() - started
    print(f"{len(comparison.results)} policies x {len(demand)} minutes: {elapsed:.2f} s")


if __name__ == "__main__":
    main()
