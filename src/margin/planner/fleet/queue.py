"""Requests waiting for a replica: first in, first out, one bucket per arrival minute. A request
waits at most `max_wait_min` minutes after the one it arrived in; then it goes to the overflow tier
(or is rejected). Waits are kept as a histogram of whole minutes for the p95."""

from __future__ import annotations

from collections import deque


class WaitQueue:
    def __init__(self, max_wait_min: int) -> None:
        self.max_wait_min = max_wait_min
        self._buckets: deque[list[int]] = deque()  # [arrival minute, requests still waiting]
        self.waits: dict[int, int] = {}  # minutes waited -> requests served after that wait

    @property
    def backlog(self) -> int:
        return sum(count for _, count in self._buckets)

    def step(self, minute: int, arrivals: int, capacity: int) -> tuple[int, int]:
        """Serve up to `capacity` requests, oldest first, then let go of those that waited their
        limit: (served, gave up)."""
        if arrivals:
            self._buckets.append([minute, arrivals])
        served = 0
        while self._buckets and served < capacity:
            bucket = self._buckets[0]
            took = min(bucket[1], capacity - served)
            self.waits[minute - bucket[0]] = self.waits.get(minute - bucket[0], 0) + took
            served += took
            bucket[1] -= took
            if bucket[1] == 0:
                self._buckets.popleft()
        gave_up = 0
        while self._buckets and minute - self._buckets[0][0] >= self.max_wait_min:
            gave_up += self._buckets.popleft()[1]
        return served, gave_up

    def drain(self) -> int:
        """Requests still waiting when the trace ends: they go where a timed-out request goes."""
        left = self.backlog
        self._buckets.clear()
        return left

    def late(self) -> int:
        """Requests served after waiting at least one minute."""
        return sum(count for waited, count in self.waits.items() if waited > 0)

    def p95_wait_min(self) -> int:
        """The 95th percentile of the wait of served requests, in whole minutes (0 when none waited)."""
        total = sum(self.waits.values())
        seen = 0
        for waited in sorted(self.waits):
            seen += self.waits[waited]
            if seen >= 0.95 * total:
                return waited
        return 0
