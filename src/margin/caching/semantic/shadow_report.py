"""What the shadow record says of each route, in the route's own decision variable: the would-be
hit rate and the estimated precision (with its one-sided Clopper-Pearson lower bound) at the
configured cosine `threshold`, or at `min_probability` for a route with the learned decision.
Shared by `margin cache shadow-report` and the dashboard's Cache page; `ShadowTally` reads the
record incrementally so a page view parses only what was appended since the last one."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from margin.caching.semantic.calibrate import CONFIDENCE, operating_point
from margin.caching.semantic.engine import SemanticPolicy
from margin.caching.semantic.shadow import RouteShadow, by_route, read_lines


@dataclass(frozen=True, slots=True)
class RouteQuality:
    route: str
    mode: str  # the route's configured mode: shadow, serve, or off (semantic cache disabled)
    decision: str  # cosine or learned
    operating: float  # the configured threshold, or min_probability for the learned decision
    lookups: int
    graded: int  # would-be hits graded in the decision's variable
    would_hit: int
    agreed: int
    precision: float | None  # None: no would-be hit
    precision_lower_bound: float
    confidence: float = CONFIDENCE

    @property
    def variable(self) -> str:
        return "min_probability" if self.decision == "learned" else "threshold"

    @property
    def hit_rate(self) -> float:
        return self.would_hit / self.lookups if self.lookups else 0.0

    def as_json(self) -> dict[str, object]:
        return {
            "route": self.route,
            "mode": self.mode,
            "decision": self.decision,
            "lookups": self.lookups,
            "graded": self.graded,
            "threshold": self.operating if self.decision == "cosine" else None,
            "min_probability": self.operating if self.decision == "learned" else None,
            "would_hit": self.would_hit,
            "hit_rate": round(self.hit_rate, 4),
            "agreed": self.agreed,
            "precision": None if self.precision is None else round(self.precision, 4),
            "precision_lower_bound": round(self.precision_lower_bound, 4),
            "confidence": self.confidence,
        }


def route_quality(shadow: RouteShadow, policy: SemanticPolicy | None, confidence: float = CONFIDENCE) -> RouteQuality:
    """What the route would have served at its configured decision, and how much of it agreed.
    A learned route counts only records with a probability (the guard already applied when on)."""
    learned = policy is not None and policy.learned is not None
    if policy is None:
        pairs, operating, guard = shadow.graded, 1.0, True
    elif learned:
        pairs, operating, guard = shadow.learned, policy.min_probability, True
    else:
        pairs, operating, guard = shadow.graded, policy.threshold, policy.guard
    point = operating_point(pairs, operating, guard=guard, confidence=confidence)
    return RouteQuality(
        route=shadow.route,
        mode=policy.mode if policy is not None else "off",
        decision="learned" if learned else "cosine",
        operating=operating,
        lookups=shadow.lookups,
        graded=len(pairs),
        would_hit=point.served,
        agreed=point.served - point.wrong,
        precision=point.precision if point.served else None,
        precision_lower_bound=point.precision_lower_bound,
        confidence=confidence,
    )


@dataclass
class ShadowTally:
    """The shadow record, read from where the last call stopped (a record that shrank is re-read).
    It keeps per route the lookup count and the graded would-be hits, not every line."""

    path: Path
    _offset: int = 0
    _routes: dict[str, RouteShadow] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def routes(self) -> dict[str, RouteShadow]:
        """Every route's record so far (blocking file I/O: call it in a thread)."""
        with self._lock:
            self._read_new()
            return {r: RouteShadow(r, s.lookups, list(s.graded), list(s.learned)) for r, s in self._routes.items()}

    def _read_new(self) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self._offset:  # truncated or replaced: start over
            self._offset, self._routes = 0, {}
        if size == self._offset:
            return
        with self.path.open("rb") as record:
            record.seek(self._offset)
            data = record.read(size - self._offset)
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next call
        self._offset += len(complete)
        found = by_route(read_lines(complete.decode("utf-8").splitlines()))
        for route, new in found.items():
            old = self._routes.get(route) or RouteShadow(route, 0, [], [])
            self._routes[route] = RouteShadow(
                route, old.lookups + new.lookups, old.graded + new.graded, old.learned + new.learned
            )
