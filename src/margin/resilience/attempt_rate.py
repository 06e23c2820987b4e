"""At most N attempts per second against a deployment, retries and failovers included.

A token bucket per deployment (burst = one second's worth). It never waits: an attempt that finds
the bucket empty goes to the next deployment, which is what protects a rate-limited provider from
being hammered by retries. Per process; with replicas, divide the provider's limit by their number
(the shared Redis counters of the multi-replica work will lift that).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from margin.resilience.deadline import Clock


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class AttemptLimiter:
    def __init__(self, rates: dict[str, float], clock: Clock = time.monotonic) -> None:
        self.rates = rates  # deployment -> attempts per second; absent: unlimited
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def try_acquire(self, deployment: str) -> bool:
        rate = self.rates.get(deployment)
        if rate is None:
            return True
        now = self.clock()
        burst = max(1.0, rate)
        bucket = self._buckets.get(deployment)
        if bucket is None:
            bucket = self._buckets[deployment] = _Bucket(burst, now)
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True
