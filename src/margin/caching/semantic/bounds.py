"""How sure a count of right and wrong hits lets us be of a precision: the one-sided Clopper-Pearson
lower bound, and how many more hits it takes to reach a target.

Clopper-Pearson inverts the binomial tail exactly, so it never claims more than the data shows
(Wilson's closed form is slightly optimistic near 1, where a cache lives). Pure Python on purpose:
calibration runs in the core install, which has no scipy; the tests check these numbers against
scipy's beta distribution.
"""

from __future__ import annotations

import math

_TINY = 1e-300
_EPSILON = 3e-16


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta (modified Lentz's method)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPSILON:
            return h
    return h  # converged to float precision long before for any count a calibration sees


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the CDF of Beta(a, b) at x."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def reaches(successes: int, trials: int, target: float, confidence: float = 0.95) -> bool:
    """Whether the one-sided Clopper-Pearson lower bound of successes/trials is >= target, without
    computing the bound: P(X >= successes | trials, target) <= 1 - confidence."""
    if successes <= 0 or trials <= 0:
        return False
    if target <= 0.0:
        return True
    return regularized_beta(target, successes, trials - successes + 1) <= 1.0 - confidence


def clopper_pearson_lower(successes: int, trials: int, confidence: float = 0.95) -> float:
    """The one-sided lower confidence bound of a binomial proportion (0 without a success)."""
    if successes <= 0 or trials <= 0:
        return 0.0
    alpha = 1.0 - confidence
    if successes == trials:
        return float(alpha ** (1.0 / trials))
    low, high = 0.0, successes / trials
    for _ in range(60):  # bisection on a monotone tail: 2^-60 is below float resolution here
        middle = (low + high) / 2
        if regularized_beta(middle, successes, trials - successes + 1) <= alpha:
            low = middle
        else:
            high = middle
    return low


def trials_needed(precision: float, target: float, confidence: float = 0.95) -> int | None:
    """The fewest served hits at which a sample whose precision stays at `precision` has a lower
    bound >= target; None when precision <= target (then no amount of such data gets there)."""
    if precision <= target:
        return None
    if precision >= 1.0:
        return math.ceil(math.log(1.0 - confidence) / math.log(target))  # alpha^(1/n) >= target

    def enough(trials: int) -> bool:
        return reaches(math.floor(precision * trials), trials, target, confidence)

    high = 1
    while not enough(high):
        high *= 2
        if high > 10**9:
            return None
    low = high // 2
    while low + 1 < high:  # the smallest n that is enough, between a failing low and a passing high
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle
    return high
