"""Calibrator and per-tier threshold policy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from margin.routing.learned.calibration import CalibrationTable, calibrate
from margin.routing.learned.thresholds import TierThresholds

# 10 prompts, scores 0.95, 0.85, ... 0.05; the strong tier gains on the 4 highest-scored ones.
SCORES = np.linspace(0.95, 0.05, 10)
WEAK = np.array([0, 0, 0, 0, 1, 1, 1, 0, 1, 1], dtype=float)
STRONG = np.array([1, 1, 1, 1, 1, 1, 1, 0, 1, 1], dtype=float)


@pytest.fixture
def table() -> CalibrationTable:
    return calibrate(SCORES, WEAK, STRONG, points=11)


def test_calibration_points(table: CalibrationTable) -> None:
    assert table.strong_share.tolist() == pytest.approx([k / 10 for k in range(11)])
    assert math.isinf(table.threshold[0])
    assert table.threshold[3] == pytest.approx(0.75)  # the 3rd highest score
    assert table.pgr[4] == pytest.approx(1.0)
    assert table.quality_fraction[-1] == pytest.approx(1.0)


def test_threshold_by_share(table: CalibrationTable) -> None:
    assert table.threshold_for_share(0.3) == pytest.approx(0.75)
    # between two points: interpolated, so continuous scores on new prompts give about 35%
    assert table.threshold_for_share(0.35) == pytest.approx(0.70)
    assert table.threshold_for_share(0.0) == math.inf
    assert table.threshold_for_share(0.04) == math.inf  # nearer to share 0 than to 10%
    assert table.threshold_for_share(0.06) == pytest.approx(0.95)
    assert table.threshold_for_share(1.0) == pytest.approx(0.05)
    assert np.count_nonzero(table.threshold_for_share(0.3) <= SCORES) == 3
    with pytest.raises(ValueError):
        table.threshold_for_share(1.5)


def test_threshold_by_quality(table: CalibrationTable) -> None:
    # strong-only quality 0.9; 95% of it = 0.855 needs quality 0.9 -> all 4 gains -> share 0.4
    threshold = table.threshold_for_quality(0.95)
    assert threshold == pytest.approx(0.65)
    assert table.share_for_threshold(threshold) == pytest.approx(0.4)


def test_share_grid_points_are_not_rounded_down() -> None:
    """ceil(s n) / n sits a hair above s: the threshold for 20% must be the 20% point, not the 10%."""
    scores = np.linspace(0.999, 0.001, 1003)
    table = calibrate(scores, np.zeros(1003), np.ones(1003), points=11)
    for share in (0.1, 0.2, 0.3, 0.7):
        assert abs(np.mean(scores >= table.threshold_for_share(share)) - share) < 0.002


def test_json_round_trip(table: CalibrationTable) -> None:
    again = CalibrationTable.from_json(table.to_json())
    assert np.array_equal(again.threshold, table.threshold)
    assert np.array_equal(again.quality_fraction, table.quality_fraction)


def test_ties_report_the_real_share() -> None:
    table = calibrate([0.5, 0.5, 0.5, 0.1], [0, 0, 0, 0], [1, 1, 1, 1], points=5)
    assert table.strong_share.tolist() == [0.0, 0.75, 0.75, 0.75, 1.0]


def test_two_tier_choice() -> None:
    policy = TierThresholds(tiers=("cheap", "strong"), thresholds=(0.6,))
    assert policy.choose(0.59).tier == "cheap"
    choice = policy.choose(0.6)
    assert (choice.tier, choice.index, choice.threshold) == ("strong", 1, 0.6)
    assert choice.explain() == "learned;tier=strong;score=0.6000;threshold=0.6000"
    assert policy.choose(0.1).threshold is None


def test_three_tiers_by_share(table: CalibrationTable) -> None:
    policy = TierThresholds.by_share(table, ("small", "large", "premium"), [0.5, 0.2])
    tiers = [choice.tier for choice in policy.choose_many(SCORES.tolist())]
    assert tiers == ["premium"] * 2 + ["large"] * 3 + ["small"] * 5


def test_by_quality_needs_two_tiers(table: CalibrationTable) -> None:
    policy = TierThresholds.by_quality(table, 0.95)
    assert [c.tier for c in policy.choose_many(SCORES.tolist())].count("strong") == 4
    with pytest.raises(ValueError):
        TierThresholds.by_quality(table, 0.95, ("a", "b", "c"))


def test_invalid_policies() -> None:
    with pytest.raises(ValueError):
        TierThresholds(tiers=("only",), thresholds=())
    with pytest.raises(ValueError):
        TierThresholds(tiers=("a", "b", "c"), thresholds=(0.8, 0.2))
    with pytest.raises(ValueError):
        TierThresholds.by_share(calibrate(SCORES, WEAK, STRONG), ("a", "b", "c"), [0.2, 0.5])
