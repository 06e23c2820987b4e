"""Always-valid comparisons of a candidate arm against the stable arm (docs/rollouts.md, "The
statistics in plain words").

A rollout looks at its data every few seconds and may stop at any look. A fixed-sample test checked
that often would raise false alarms far above its nominal rate, so every comparison here is a
*confidence sequence*: an interval that holds for all looks at once with probability >= 1 - alpha.

The boundary is Robbins' normal mixture (Robbins 1970; Howard, Ramdas, McAuliffe and Sekhon, "Time-
uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 2021, eq. (14)), the same
martingale as the mixture SPRT of Johari, Koomen, Pekelis and Walsh, "Always valid inference",
Oper. Res. 2022. For an estimate theta_hat of the difference with variance V (sum of each arm's
variance over its count) and a normal mixing distribution N(0, tau^2) over the effect:

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * (theta_hat - theta)^2 / (2 V (V + tau^2)))

is a nonnegative martingale under theta, so by Ville's inequality P(ever Lambda >= 1/alpha) <= alpha.
Solving Lambda < 1/alpha for theta gives the interval theta_hat +- h with

    h = sqrt( V (V + tau^2) / tau^2 * ( 2 ln(1/alpha) + ln((V + tau^2) / V) ) ).

Per-request outcomes are bounded (0/1, or scores in [0, 1]) and the variances are plugged in from
the data (shrunk towards 1/4 so an arm with no errors yet is not treated as certain), which makes the
guarantee asymptotic (Waudby-Smith, Arnold, Wu, Howard and Ramdas, "Time-uniform central limit
theory and asymptotic confidence sequences", Ann. Statist. 2024). A minimum number of requests per
arm before any verdict keeps the approximation honest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["worse", "ok", "inconclusive", "waiting"]
_PRIOR_WEIGHT = 1.0  # pseudo-observations at the largest variance a [0, 1] outcome can have (1/4)


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
    def variance(self) -> float:
        """The sample variance shrunk towards 1/4 by `_PRIOR_WEIGHT` pseudo-observations."""
        if self.n == 0:
            return 0.25
        sample = max(0.0, self.total_sq / self.n - self.mean**2)
        return (self.n * sample + _PRIOR_WEIGHT * 0.25) / (self.n + _PRIOR_WEIGHT)


def mixture_halfwidth(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence for an estimate of variance `variance`
    (see the module docstring). Infinite before there is any data."""
    if variance <= 0 or not math.isfinite(variance):
        return math.inf
    tau2 = tau * tau
    return math.sqrt(
        variance * (variance + tau2) / tau2 * (2 * math.log(1 / alpha) + math.log((variance + tau2) / variance))
    )


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
    """`worse`: the candidate is worse than the stable arm by more than `margin` (the whole interval
    lies above it); `ok`: worse by less than `margin` (the whole interval lies below it);
    `inconclusive`: neither yet; `waiting`: an arm has fewer than `min_n` outcomes."""
    sign = 1.0 if higher_is_worse else -1.0
    estimate = sign * (candidate.mean - stable.mean)
    variance = stable.variance / max(stable.n, 1) + candidate.variance / max(candidate.n, 1)
    half = mixture_halfwidth(variance, tau, alpha)
    lower, upper = estimate - half, estimate + half
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
    `worse` when the whole interval lies below `floor`, `ok` when it lies above."""
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
