"""The statistics against known values: McNemar's exact test, bootstrap intervals, percentiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from margin.evals.stats import bootstrap_means, lower_bound, mcnemar_exact, mean_interval, percentile, weighted_mean


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (10, 2, 158 / 4096),  # 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
        (2, 10, 158 / 4096),  # symmetric
        (5, 5, 1.0),
        (0, 0, 1.0),  # no discordant pairs: no evidence of a difference
        (8, 0, 2 / 256),  # 2 * (1/2)^8
        (1, 0, 1.0),
    ],
)
def test_mcnemar_exact_matches_the_binomial_arithmetic(b: int, c: int, p: float) -> None:
    result = mcnemar_exact(b, c)
    assert (result.only_baseline, result.only_candidate) == (b, c)
    assert result.p_value == pytest.approx(p, rel=1e-12)


def test_weighted_mean() -> None:
    assert weighted_mean([1, 0], [3, 1]) == 0.75
    assert weighted_mean([]) is None


def test_bootstrap_interval_of_a_proportion_is_close_to_the_normal_one() -> None:
    values = [1.0] * 50 + [0.0] * 50
    interval = mean_interval(values)
    assert interval is not None and interval.level == 0.95
    half_width = 1.96 * math.sqrt(0.25 / 100)  # about 0.098
    assert interval.low == pytest.approx(0.5 - half_width, abs=0.015)
    assert interval.high == pytest.approx(0.5 + half_width, abs=0.015)


def test_bootstrap_is_seeded_and_degenerate_cases_are_exact() -> None:
    values = list(np.random.default_rng(1).normal(size=40))
    assert mean_interval(values) == mean_interval(values)
    assert mean_interval(values, seed=1) != mean_interval(values, seed=2)
    constant = mean_interval([0.0] * 30)
    assert constant is not None and (constant.low, constant.high) == (0.0, 0.0)
    assert mean_interval([]) is None and lower_bound([]) is None


def test_one_sided_lower_bound_is_the_matching_quantile_of_the_resampled_means() -> None:
    diffs = [0.0] * 30 + [-1.0] * 6 + [1.0] * 4
    means = bootstrap_means(diffs)
    assert lower_bound(diffs, confidence=0.95) == pytest.approx(float(np.quantile(means, 0.05)))
    assert lower_bound(diffs, confidence=0.95) > lower_bound(diffs, confidence=0.99)  # type: ignore[operator]
    # the one-sided 95% bound sits inside the two-sided 95% interval
    interval = mean_interval(diffs)
    assert interval is not None and interval.low < lower_bound(diffs) < interval.high  # type: ignore[operator]


def test_weights_count_in_resampled_means() -> None:
    heavy = mean_interval([1.0, 0.0], [99.0, 1.0], resamples=2000)
    assert heavy is not None and heavy.high == 1.0


def test_percentile() -> None:
    assert percentile(list(range(101)), 95) == 95.0
    assert percentile([], 50) is None
