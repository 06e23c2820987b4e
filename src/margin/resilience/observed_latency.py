"""Stream timeouts that follow each deployment's measured behaviour.

A fixed 30 s first-token timeout holds a client half a minute on a hung upstream that normally
answers in 300 ms. So, per deployment, the call stage keeps two small windows of recent
measurements: the time to first token of each stream, and the longest gap between events each
stream showed. A stream's timeouts are then

    first token = clamp(multiplier x quantile(recent TTFTs), first_token_floor, timeouts.first_token)
    idle        = clamp(multiplier x quantile(recent longest gaps), idle_floor, timeouts.idle)

(by default 3 x p99, floors 3 s and 5 s, ceilings the 30 s defaults). Until `min_samples`
measurements exist within `horizon_s`, the ceiling holds. A value set in the deployment's config
always wins: it is the operator's word.

A timeout that fires on a tightened bound counts as a measurement of the bound itself (a censored
sample: the upstream took at least that long). Without that, a deployment that slowed down would be
cut off at a bound its own timeouts stop it from ever raising; with it, a few such timeouts raise
the quantile to the bound, and the next bound is `multiplier` times larger, up to the ceiling.

Cheap by design: an append to a bounded deque and an insertion into a sorted list of at most
`window` floats per stream, and an index into that list when a stream opens. In-process only: each
replica measures what it sees.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from dataclasses import dataclass, field

from margin.config.model import AdaptiveTimeouts, Timeouts
from margin.resilience.deadline import Clock


@dataclass(slots=True)
class _Window:
    """The most recent measurements, (when, seconds), oldest first, and the same seconds kept in
    order (so a quantile is an index, not a sort of the window each time a stream opens)."""

    size: int
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    ordered: list[float] = field(default_factory=list)

    def add(self, now: float, seconds: float) -> None:
        self.samples.append((now, seconds))
        bisect.insort(self.ordered, seconds)
        if len(self.samples) > self.size:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, seconds = self.samples.popleft()
        del self.ordered[bisect.bisect_left(self.ordered, seconds)]

    def quantile(self, q: float, now: float, horizon: float, min_samples: int) -> float | None:
        """Nearest-rank quantile of the measurements younger than `horizon`; None when too few."""
        while self.samples and self.samples[0][0] < now - horizon:
            self._drop_oldest()
        if len(self.samples) < min_samples:
            return None
        return self.ordered[max(0, math.ceil(q * len(self.ordered)) - 1)]


@dataclass(slots=True)
class _Deployment:
    first_token: _Window
    longest_gap: _Window


class ObservedLatency:
    """Per deployment: what its streams measured, and the timeouts those measurements allow."""

    def __init__(self, settings: AdaptiveTimeouts, clock: Clock = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self._by_deployment: dict[str, _Deployment] = {}

    def _of(self, deployment: str) -> _Deployment:
        found = self._by_deployment.get(deployment)
        if found is None:
            size = self.settings.window
            found = self._by_deployment[deployment] = _Deployment(_Window(size), _Window(size))
        return found

    # --- measurements -----------------------------------------------------------------------------

    def first_token_seen(self, deployment: str, seconds: float) -> None:
        """A stream's first event came `seconds` after its attempt started (or a tightened
        first-token timeout of `seconds` fired)."""
        self._of(deployment).first_token.add(self.clock(), seconds)

    def longest_gap_seen(self, deployment: str, seconds: float) -> None:
        """A finished stream's longest wait between two events (or a tightened idle timeout fired)."""
        self._of(deployment).longest_gap.add(self.clock(), seconds)

    # --- timeouts ---------------------------------------------------------------------------------

    def first_token_timeout(self, deployment: str, timeouts: Timeouts) -> float | None:
        """A tighter first-token timeout than the configured one, or None: the configured one holds."""
        if "first_token" in timeouts.model_fields_set:
            return None
        window = self._of(deployment).first_token
        return self._tightened(window, self.settings.first_token_floor, timeouts.first_token)

    def idle_timeout(self, deployment: str, timeouts: Timeouts) -> float | None:
        """A tighter idle timeout than the configured one, or None: the configured one holds."""
        if "idle" in timeouts.model_fields_set:
            return None
        window = self._of(deployment).longest_gap
        return self._tightened(window, self.settings.idle_floor, timeouts.idle)

    def _tightened(self, window: _Window, floor: float, ceiling: float) -> float | None:
        s = self.settings
        if not s.enabled:
            return None
        measured = window.quantile(s.quantile, self.clock(), s.horizon_s, s.min_samples)
        if measured is None:
            return None
        bound = min(ceiling, max(floor, s.multiplier * measured))
        return bound if bound < ceiling else None

    def describe(self, deployment: str, timeouts: Timeouts) -> dict[str, float | int | None]:
        """The current numbers, for operators (`GET /admin/deployments` can show them)."""
        state = self._of(deployment)
        return {
            "first_token_samples": len(state.first_token.samples),
            "first_token_timeout_s": self.first_token_timeout(deployment, timeouts) or timeouts.first_token,
            "idle_samples": len(state.longest_gap.samples),
            "idle_timeout_s": self.idle_timeout(deployment, timeouts) or timeouts.idle,
        }
