"""The statistics of evals, in one place: weighted means with bootstrap intervals, the paired
bootstrap of a difference, McNemar's exact test, percentiles. Seeded, so a report is reproducible.

scipy (the `evals` extra) is imported only by McNemar's test, when it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from margin.evals.errors import ExtraMissing

RESAMPLES = 10_000
SEED = 20240917
_CHUNK = 500  # resamples drawn at once: bounds memory at _CHUNK x items


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float
    level: float  # e.g. 0.95 for a two-sided 95% interval


def weighted_mean(values: Sequence[float], weights: Sequence[float] | None = None) -> float | None:
    if not values:
        return None
    w = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=np.float64)
    return float(np.dot(np.asarray(values, dtype=np.float64), w) / w.sum())


def bootstrap_means(
    values: Sequence[float], weights: Sequence[float] | None = None, *, resamples: int = RESAMPLES, seed: int = SEED
) -> NDArray[np.float64]:
    """Weighted means of `resamples` resamples of the items (drawn with replacement)."""
    v = np.asarray(values, dtype=np.float64)
    w = np.ones(v.size) if weights is None else np.asarray(weights, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, _CHUNK):
        count = min(_CHUNK, resamples - start)
        picks = rng.integers(0, v.size, size=(count, v.size))
        means[start : start + count] = (v[picks] * w[picks]).sum(axis=1) / w[picks].sum(axis=1)
    return means


def mean_interval(
    values: Sequence[float],
    weights: Sequence[float] | None = None,
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval | None:
    """Two-sided percentile-bootstrap interval of the weighted mean (None without values)."""
    if not values:
        return None
    means = bootstrap_means(values, weights, resamples=resamples, seed=seed)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(low), float(high), level)


def lower_bound(
    values: Sequence[float],
    weights: Sequence[float] | None = None,
    *,
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> float | None:
    """One-sided lower confidence bound of the weighted mean: the (1 - confidence) quantile of the
    bootstrap distribution. For paired differences this is what non-inferiority compares."""
    if not values:
        return None
    means = bootstrap_means(values, weights, resamples=resamples, seed=seed)
    return float(np.quantile(means, 1 - confidence))


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


@dataclass(frozen=True, slots=True)
class McNemar:
    """Discordant pairs of a pass/fail comparison and the exact two-sided p-value."""

    only_baseline: int  # baseline passed, candidate failed
    only_candidate: int  # candidate passed, baseline failed
    p_value: float


def mcnemar_exact(only_baseline: int, only_candidate: int) -> McNemar:
    """McNemar's exact test: under "no difference" each discordant pair is a fair coin flip, so the
    p-value is a two-sided binomial test of the smaller count among all discordant pairs."""
    discordant = only_baseline + only_candidate
    if discordant == 0:
        return McNemar(only_baseline, only_candidate, 1.0)
    try:
        from scipy.stats import binomtest
    except ImportError:
        raise ExtraMissing("McNemar's test (margin eval compare)", "evals", "scipy") from None
    p_value = float(binomtest(min(only_baseline, only_candidate), discordant, 0.5).pvalue)
    return McNemar(only_baseline, only_candidate, min(1.0, p_value))


def scipy_available() -> bool:
    from importlib.util import find_spec

    return find_spec("scipy") is not None
