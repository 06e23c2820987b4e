"""The self-hosting input: the measured volume and token mix after the levers, at each multiplier.

These are the figures the planner reads (requests per day, mean input and output tokens); a
planner profile's `requests_per_day`, `input_tokens` and `output_tokens` take them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from margin.whatif.traffic import Record

_DAY_S = 86_400.0


@dataclass(frozen=True)
class VolumeRow:
    multiplier: float
    requests_per_day: float  # all recorded requests
    upstream_per_day: float  # left after the cache
    weak_per_day: float  # of those, sent to the weak tier by the router
    input_tokens_mean: float
    output_tokens_mean: float


def project_volume(
    records: Sequence[Record], remaining: Sequence[Record], weak_requests: int, multipliers: Sequence[float]
) -> list[VolumeRow]:
    if not records:
        return []
    span = max(records[-1].timestamp - records[0].timestamp, 0.0)
    days = max(span / _DAY_S, 1.0 / 24)  # under an hour of traffic reads as one hour's worth
    pool = remaining or records
    input_mean = sum(r.usage.input_total for r in pool) / len(pool)
    output_mean = sum(r.usage.output + r.usage.output_reasoning for r in pool) / len(pool)
    return [
        VolumeRow(
            multiplier=m,
            requests_per_day=m * len(records) / days,
            upstream_per_day=m * len(remaining) / days,
            weak_per_day=m * weak_requests / days,
            input_tokens_mean=input_mean,
            output_tokens_mean=output_mean,
        )
        for m in multipliers
    ]
