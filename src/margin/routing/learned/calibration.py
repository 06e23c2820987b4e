"""Calibrator: turns held-out (out-of-fold) scores and outcomes into operating points.

A CalibrationTable lists, for a grid of strong-tier shares, the score threshold that produced that
share on held-out prompts and the quality it bought there. Thresholds are then picked by target
share of strong-tier traffic or by target quality, without the outcome data at hand: the table is
small and travels inside the model file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from margin.routing.learned.curve import routing_curve

Vector = NDArray[np.float64]


@dataclass(frozen=True)
class CalibrationTable:
    """Operating points, by increasing strong share: route to strong when score >= threshold."""

    strong_share: Vector
    threshold: Vector
    quality_fraction: Vector  # quality / strong-only quality, on the held-out prompts
    pgr: Vector

    def threshold_for_share(self, share: float) -> float:
        """Threshold for a held-out strong-tier share of `share`, interpolated linearly between the
        two table points around it.

        The table's points sit at ceil(s n) / n, a hair above each grid share s, so the earlier rule
        "the closest point not above the share" took the point one step (1 point of share) below
        nearly every time: on held-out RouteLLM folds a configured 20% came out 17.4-19.7%.
        """
        if not 0.0 <= share <= 1.0:
            raise ValueError("share must be in [0, 1]")
        shares, thresholds = self.strong_share, self.threshold
        above = int(np.searchsorted(shares, share, side="left"))  # first point with share >= `share`
        if above == 0 or above == shares.size:
            return float(thresholds[min(above, shares.size - 1)])
        below = above - 1
        low, high = float(shares[below]), float(shares[above])
        if not np.isfinite(thresholds[below]):  # share 0 (+inf): the nearer of the two points
            return float(thresholds[below] if share - low < high - share else thresholds[above])
        weight = (share - low) / (high - low)
        return float(thresholds[below] + weight * (thresholds[above] - thresholds[below]))

    def threshold_for_quality(self, fraction_of_strong: float) -> float:
        """Highest threshold (fewest strong calls) whose held-out quality reaches the target fraction
        of strong-only quality; everything goes strong if no point reaches it."""
        reached = np.flatnonzero(self.quality_fraction >= fraction_of_strong - 1e-12)
        return float(self.threshold[reached[0]]) if reached.size else float(self.threshold[-1])

    def share_for_threshold(self, threshold: float) -> float:
        """Expected strong-tier share of a threshold (for logs and the route header)."""
        meets = np.flatnonzero(self.threshold <= threshold + 1e-12)
        return float(self.strong_share[meets[0]]) if meets.size else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "strong_share": self.strong_share.tolist(),
            "threshold": self.threshold.tolist(),
            "quality_fraction": self.quality_fraction.tolist(),
            "pgr": self.pgr.tolist(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CalibrationTable:
        return cls(**{key: np.asarray(data[key], dtype=np.float64) for key in cls.__dataclass_fields__})


def calibrate(
    scores: ArrayLike, weak_score: ArrayLike, strong_score: ArrayLike, *, points: int = 101
) -> CalibrationTable:
    """Operating points at `points` evenly spaced strong shares from 0 to 1 on held-out outcomes.

    The threshold for share s is the score of the ceil(s n)-th highest prompt; share 0 gets +inf.
    """
    score = np.asarray(scores, dtype=np.float64)
    curve = routing_curve(score, weak_score, strong_score)
    n = score.size
    ranked = np.sort(score)[::-1]
    counts = np.ceil(np.linspace(0.0, 1.0, points) * n - 1e-9).astype(np.intp)
    thresholds = np.array([np.inf if k == 0 else ranked[k - 1] for k in counts])
    # Ties make the real share of a threshold larger than k/n: report what the threshold does.
    real_counts = np.array([int(np.count_nonzero(score >= t)) for t in thresholds])
    quality = curve.quality[real_counts]
    gap = curve.strong_quality - curve.weak_quality
    return CalibrationTable(
        strong_share=real_counts / n,
        threshold=thresholds,
        quality_fraction=quality / curve.strong_quality if curve.strong_quality else np.ones_like(quality),
        # With no gap between the tiers there is nothing to recover: report 0 rather than fail.
        pgr=(quality - curve.weak_quality) / gap if abs(gap) > 1e-12 else np.zeros_like(quality),
    )
