"""Always-valid comparisons of a candidate arm against the stable arm (docs/rollouts.md, "The
statistics in plain words").

A rollout looks at its data every few seconds and may stop at any look. A fixed-sample test checked
that often would raise false alarms far above its nominal rate, so every comparison here is
*always valid*: it holds for all looks at once with probability >= 1 - alpha.

Each decision is a one-sided question about the difference theta (candidate - stable, oriented so
that positive is worse) against the signal's margin m: "worse" rejects theta <= m (a rollback),
"ok" rejects theta >= m (non-inferiority, what promotion needs). Only one of the two hypotheses can
be true, so each side gets the whole alpha: nothing is split two ways.

The boundary is the one-sided normal mixture (Robbins 1970; Howard, Ramdas, McAuliffe and Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021).
For an estimate theta_hat with variance V and a half-normal mixing distribution of scale tau over
the effects beyond m (lambda >= 0 only: only "more worse than m" is evidence against theta <= m):

    Lambda = 2 sqrt(V / (V + tau^2)) exp(x^2 tau^2 / (2 V (V + tau^2))) Phi(x tau / sqrt(V (V + tau^2)))

with x = theta_hat - m, is a nonnegative supermartingale for every theta <= m, so by Ville's
inequality P(ever Lambda >= 1/alpha) <= alpha. The half-width h is the x at which Lambda = 1/alpha
(solved by bisection between two closed forms: the two-sided Robbins boundary above it, the same
with alpha doubled below it). tau is the excess over the margin the boundary is tightest for
(decide.mixture_scale): the fewest requests to a verdict come with tau equal to that excess.

Per-request outcomes are bounded (0/1, or scores in [0, 1]) and the variances are plugged in from the
data, which makes the guarantee asymptotic (Waudby-Smith, Arnold, Wu, Howard and Ramdas, "Time-
uniform central limit theory and asymptotic confidence sequences", Ann. Statist. 2024); a minimum
number of requests per arm before any verdict keeps the approximation honest. For 0/1 outcomes the
variance of the rollback test is the one the data would have if theta were exactly m (the
restricted maximum-likelihood rates of Farrington and Manning, Stat. Med. 1990): the variance of the
null being tested, as a score test uses. The promotion side, and scores between 0 and 1, use each
arm's sample variance (as before: an error-free arm's shrunk variance is small, so the promotion
side is the optimistic one at small counts). Either way each arm's
variance is shrunk towards 1/4 by one pseudo-observation, so an arm with no errors yet is not
treated as certain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["worse", "ok", "inconclusive", "waiting"]
_PRIOR_WEIGHT = 1.0  # pseudo-observations at the largest variance a [0, 1] outcome can have (1/4)
_BISECTIONS = 60


@dataclass(frozen=True, slots=True)
class ArmStats:
    """Sufficient statistics of one arm's per-request outcomes in [0, 1]."""

    n: int
    total: float
    total_sq: float

    @classmethod
    def binary(cls, n: int, hits: int) -> ArmStats:
        return cls(n, float(hits), float(hits))

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def is_binary(self) -> bool:
        """Every outcome is 0 or 1 (for outcomes in [0, 1], x^2 == x only there)."""
        return self.total == self.total_sq

    @property
    def variance(self) -> float:
        """The sample variance shrunk towards 1/4 by `_PRIOR_WEIGHT` pseudo-observations."""
        if self.n == 0:
            return 0.25
        return _shrunk(self.n, max(0.0, self.total_sq / self.n - self.mean**2))


def _shrunk(n: int, variance: float) -> float:
    return (n * variance + _PRIOR_WEIGHT * 0.25) / (n + _PRIOR_WEIGHT)


def _log_mixture(x: float, variance: float, tau2: float) -> float:
    """log Lambda of the one-sided normal mixture at excess x >= 0 (module docstring)."""
    total = variance + tau2
    z = x * math.sqrt(tau2 / (variance * total))
    log_phi = math.log(0.5 * math.erfc(-z / math.sqrt(2)))
    return math.log(2) + 0.5 * math.log(variance / total) + x * x * tau2 / (2 * variance * total) + log_phi


def _robbins(variance: float, tau2: float, alpha: float) -> float:
    total = variance + tau2
    return math.sqrt(variance * total / tau2 * (2 * math.log(1 / alpha) + math.log(total / variance)))


def mixture_halfwidth(variance: float, tau: float, alpha: float) -> float:
    """How far beyond the margin an estimate of variance `variance` must lie before the one-sided
    normal mixture rejects at level `alpha` (see the module docstring). Infinite before there is
    any data."""
    if variance <= 0 or not math.isfinite(variance):
        return math.inf
    tau2 = tau * tau
    # Phi lies in [1/2, 1] at x >= 0: the two-sided boundary at alpha bounds h above, at 2 alpha below.
    low, high = _robbins(variance, tau2, min(2 * alpha, 0.999)), _robbins(variance, tau2, alpha)
    target = math.log(1 / alpha)
    for _ in range(_BISECTIONS):
        mid = 0.5 * (low + high)
        if _log_mixture(mid, variance, tau2) >= target:
            high = mid
        else:
            low = mid
    return high


def null_rates(stable: ArmStats, candidate: ArmStats, shift: float) -> tuple[float, float]:
    """The maximum-likelihood rates of two 0/1 arms under the constraint candidate = stable + shift
    (Farrington and Manning 1990), found by bisection: the log-likelihood is concave in the rate."""
    low, high = max(0.0, -shift), min(1.0, 1.0 - shift)
    if low >= high:
        return low, low + shift

    def slope(p: float) -> float:
        q = p + shift
        return (
            _d(stable.total, p) - _d(stable.n - stable.total, 1 - p)
            + _d(candidate.total, q) - _d(candidate.n - candidate.total, 1 - q)
        )  # fmt: skip

    for _ in range(_BISECTIONS):
        mid = 0.5 * (low + high)
        if slope(mid) > 0:
            low = mid
        else:
            high = mid
    p = 0.5 * (low + high)
    return p, min(1.0, max(0.0, p + shift))


def _d(count: float, p: float) -> float:
    """count / p, the derivative of count * log(p), with 0 * log(0) taken as 0."""
    if count <= 0:
        return 0.0
    return count / p if p > 0 else math.inf


def difference_variance(stable: ArmStats, candidate: ArmStats, shift: float | None = None) -> float:
    """Variance of (candidate mean - stable mean): under the null candidate - stable = `shift` for
    0/1 arms, from each arm's sample variance otherwise (or when `shift` is None)."""
    n_s, n_c = max(stable.n, 1), max(candidate.n, 1)
    if shift is not None and stable.n and candidate.n and stable.is_binary and candidate.is_binary:
        p_s, p_c = null_rates(stable, candidate, shift)
        return _shrunk(stable.n, p_s * (1 - p_s)) / n_s + _shrunk(candidate.n, p_c * (1 - p_c)) / n_c
    return stable.variance / n_s + candidate.variance / n_c


@dataclass(frozen=True, slots=True)
class SignalComparison:
    """How much worse the candidate is on one signal (positive: worse), with its interval."""

    signal: str
    stable: float  # the stable arm's mean
    candidate: float
    worse_by: float  # estimate of (candidate - stable), oriented so that positive is worse
    lower: float
    upper: float
    margin: float  # the most it may be worse by
    verdict: Verdict
    n_stable: int
    n_candidate: int

    def as_dict(self) -> dict[str, object]:
        return {
            "signal": self.signal, "verdict": self.verdict, "stable": _r(self.stable), "candidate": _r(self.candidate),
            "worse_by": _r(self.worse_by), "interval": [_r(self.lower), _r(self.upper)], "margin": self.margin,
            "n_stable": self.n_stable, "n_candidate": self.n_candidate,
        }  # fmt: skip


def compare_arms(
    signal: str,
    stable: ArmStats,
    candidate: ArmStats,
    *,
    higher_is_worse: bool,
    margin: float,
    alpha: float,
    tau: float,
    min_n: int,
) -> SignalComparison:
    """`worse`: the candidate is worse than the stable arm by more than `margin` (the estimate lies
    more than the one-sided half-width above it); `ok`: worse by less than `margin` (as far below
    it); `inconclusive`: neither yet; `waiting`: an arm has fewer than `min_n` outcomes. Each side
    is a one-sided test at `alpha` against "worse by exactly `margin`": the rollback side with the
    variance of that null (0/1 outcomes), the promotion side with the arms' own variances."""
    sign = 1.0 if higher_is_worse else -1.0
    estimate = sign * (candidate.mean - stable.mean)
    lower = estimate - mixture_halfwidth(difference_variance(stable, candidate, sign * margin), tau, alpha)
    upper = estimate + mixture_halfwidth(difference_variance(stable, candidate), tau, alpha)
    verdict: Verdict
    if min(stable.n, candidate.n) < min_n:
        verdict = "waiting"
    elif lower > margin:
        verdict = "worse"
    elif upper < margin:
        verdict = "ok"
    else:
        verdict = "inconclusive"
    return SignalComparison(
        signal, stable.mean, candidate.mean, estimate, lower, upper, margin, verdict, stable.n, candidate.n
    )


def compare_to_floor(
    signal: str, arm: ArmStats, *, floor: float, alpha: float, tau: float, min_n: int
) -> SignalComparison:
    """One arm's mean against a floor (a shadow candidate's agreement with the stable answers):
    `worse` when the mean lies a one-sided half-width below `floor`, `ok` when as far above it."""
    half = mixture_halfwidth(arm.variance / max(arm.n, 1), tau, alpha)
    lower, upper = arm.mean - half, arm.mean + half
    verdict: Verdict
    if arm.n < min_n:
        verdict = "waiting"
    elif upper < floor:
        verdict = "worse"
    elif lower >= floor:
        verdict = "ok"
    else:
        verdict = "inconclusive"
    # Oriented like compare_arms: worse_by is how far below the floor the mean is.
    return SignalComparison(
        signal, floor, arm.mean, floor - arm.mean, floor - upper, floor - lower, 0.0, verdict, 0, arm.n
    )


def _r(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None
