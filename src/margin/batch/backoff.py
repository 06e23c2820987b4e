"""The batch's back-off per tier: each line is bound for a tier (the deployments of its model group,
read from the line's `model`), and each tier has a throttle of its own that halves the batch's lines
on that tier while interactive upstream calls crowd *its* deployments and gives them back one at a
time when they are gone. A busy local tier slows only the lines bound for it; lines for an idle API
tier run at `batch.concurrency` meanwhile, and the other way round.

Interactive calls on a tier are the upstream calls open on its deployments (the caller's per
deployment count, the batch's own included) minus the batch lines this replica runs on that tier or
on any tier sharing a deployment with it (a line's deployment is known only once routing chose it,
so a line counts against every deployment of its group)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from margin.batch.schedule import Throttle
from margin.config.batch import BatchConfig

Tier = tuple[str, ...]  # deployment names, sorted; () = unknown (the whole replica)
WHOLE_REPLICA: Tier = ()


@runtime_checkable
class TierSignals(Protocol):
    """What a line executor may tell the back-off (the pipeline's does): a line's tier and its load."""

    def tier_of(self, body: dict[str, Any]) -> Tier:
        """The deployments a line's body is bound for; () when it cannot tell."""

    def tier_load(self, tier: Tier) -> int:
        """Upstream calls open now on those deployments (all of this replica's for ())."""


def tier_load_from(in_flight: Mapping[str, int]) -> Callable[[Tier], int]:
    """Upstream calls open now on a tier's deployments (all of them for the whole replica)."""

    def load(tier: Tier) -> int:
        if tier == WHOLE_REPLICA:
            return sum(in_flight.values())
        return sum(in_flight.get(name, 0) for name in tier)

    return load


class TierBackoff:
    """Lines running per tier and each tier's throttle (created on the first line bound for it)."""

    def __init__(
        self,
        settings: BatchConfig,
        load: Callable[[Tier], int],
        tier_of: Callable[[dict[str, Any]], Tier] | None = None,
    ) -> None:
        self.settings = settings
        self.load = load
        self._tier_of = tier_of
        self.running: Counter[Tier] = Counter()
        self.throttles: dict[Tier, Throttle] = {}
        if tier_of is None:
            self.throttle(WHOLE_REPLICA)  # one back-off for every line, looking from the start

    @property
    def per_tier(self) -> bool:
        """Whether lines are told apart by tier (else every line is the whole replica's)."""
        return self._tier_of is not None

    def tier_of(self, body: dict[str, Any]) -> Tier:
        return WHOLE_REPLICA if self._tier_of is None else self._tier_of(body)

    def threshold(self, tier: Tier) -> int | None:
        """The tier's `batch.yield_above_by_deployment` (the lowest of its deployments'), else the
        replica-wide `batch.yield_above_in_flight`."""
        own = [self.settings.yield_above_by_deployment[d] for d in tier if d in self.settings.yield_above_by_deployment]
        return min(own) if own else self.settings.yield_above_in_flight

    def throttle(self, tier: Tier) -> Throttle:
        found = self.throttles.get(tier)
        if found is None:
            found = self.throttles[tier] = Throttle(
                self.settings.concurrency, lambda: self.interactive(tier), self.threshold(tier)
            )
            if found.yield_above is not None and found.interactive() > found.yield_above:
                found.limit = 1  # a tier first seen crowded starts at one line, not at the ceiling
        return found

    def interactive(self, tier: Tier) -> int:
        batch = sum(n for other, n in self.running.items() if _shares(tier, other))
        return max(0, self.load(tier) - batch)

    def may_start(self, tier: Tier) -> bool:
        return self.running[tier] < self.throttle(tier).limit

    def started(self, tier: Tier) -> None:
        self.running[tier] += 1

    def ended(self, tier: Tier) -> None:
        self.running[tier] -= 1
        if self.running[tier] <= 0:
            del self.running[tier]

    def adjust(self) -> bool:
        """Look at every tier's load once; True when some tier may start more lines than it runs."""
        roomier = False
        for tier, throttle in self.throttles.items():
            if throttle.adjust() > self.running[tier]:
                roomier = True
        return roomier


def _shares(tier: Tier, other: Tier) -> bool:
    return tier == WHOLE_REPLICA or other == WHOLE_REPLICA or not set(tier).isdisjoint(other)
