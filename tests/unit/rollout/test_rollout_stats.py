"""The one-sided test against its closed form and its promise: a candidate worse by exactly the
margin (the hardest case the guarantee covers), looked at after every request, is rarely ever
declared worse; a clearly worse one is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from margin.rollout.stats import (
    ArmStats,
    compare_arms,
    compare_to_floor,
    difference_variance,
    mixture_halfwidth,
    null_rates,
)


def _log_lambda(x: float, v: float, tau: float) -> float:
    """log of the one-sided normal mixture, 2 sqrt(V/(V+tau^2)) exp(...) Phi(...), written out again."""
    phi = 0.5 * (1 + math.erf(x * tau / math.sqrt(v * (v + tau**2)) / math.sqrt(2)))
    return math.log(2 * math.sqrt(v / (v + tau**2)) * math.exp(tau**2 * x**2 / (2 * v * (v + tau**2))) * phi)


@pytest.mark.parametrize(("v", "tau", "alpha"), [(0.0004, 0.04, 0.01), (1e-5, 0.02, 0.005), (0.01, 0.01, 0.2)])
def test_halfwidth_is_where_the_one_sided_mixture_reaches_one_over_alpha(v: float, tau: float, alpha: float) -> None:
    h = mixture_halfwidth(v, tau, alpha)
    assert _log_lambda(h, v, tau) == pytest.approx(math.log(1 / alpha), rel=1e-9)
    # Narrower than the two-sided Robbins boundary at the same alpha, wider than it at 2 alpha.
    robbins = [math.sqrt(v * (v + tau**2) / tau**2 * (2 * math.log(1 / a) + math.log((v + tau**2) / v)))
               for a in (alpha, 2 * alpha)]  # fmt: skip
    assert robbins[1] < h < robbins[0]
    assert mixture_halfwidth(0.0, tau, alpha) == math.inf


def test_null_rates_maximise_the_likelihood_under_the_constraint() -> None:
    stable, candidate = ArmStats.binary(5_000, 4_000), ArmStats.binary(800, 600)  # 80% and 75%
    p_s, p_c = null_rates(stable, candidate, -0.02)
    assert p_c == pytest.approx(p_s - 0.02, abs=1e-12)

    def loglik(p: float) -> float:
        q = p - 0.02
        return 4_000 * math.log(p) + 1_000 * math.log(1 - p) + 600 * math.log(q) + 200 * math.log(1 - q)

    assert all(loglik(p_s) >= loglik(p_s + d) for d in (-1e-3, -1e-5, 1e-5, 1e-3))
    assert 0.75 < p_c < 0.78 < p_s < 0.80  # between the observed rates, pulled towards the big arm
    # The variance of the null, not of the observed rates: smaller here, where the candidate looks worse.
    plug_in = stable.variance / stable.n + candidate.variance / candidate.n
    assert difference_variance(stable, candidate, -0.02) < plug_in
    # Scores between 0 and 1 keep each arm's own variance.
    scores = ArmStats(100, 70.0, 55.0)
    assert difference_variance(scores, scores, 0.0) == pytest.approx(2 * scores.variance / 100)


def test_shrunk_variance_never_treats_an_error_free_arm_as_certain() -> None:
    arm = ArmStats.binary(50, 0)
    assert arm.mean == 0 and 0 < arm.variance < 0.25 / 50
    assert difference_variance(arm, arm, 0.0) > 0


@pytest.mark.parametrize(("rate", "margin", "higher_is_worse"), [(0.8, 0.02, False), (0.05, 0.02, True)])
def test_a_candidate_worse_by_exactly_the_margin_watched_continuously_is_rarely_called_worse(
    rate: float, margin: float, higher_is_worse: bool
) -> None:
    rng = np.random.default_rng(3)
    alarms, runs, alpha = 0, 300, 0.05
    candidate_rate = rate + margin if higher_is_worse else rate - margin
    for _ in range(runs):
        s = np.cumsum(rng.random(3_000) < rate)
        c = np.cumsum(rng.random(3_000) < candidate_rate)
        for n in range(100, 3_001, 20):  # a look every 20 requests per arm, 146 looks
            cmp = compare_arms("q", ArmStats.binary(n, int(s[n - 1])), ArmStats.binary(n, int(c[n - 1])),
                               higher_is_worse=higher_is_worse, margin=margin, alpha=alpha, tau=margin,
                               min_n=100)  # fmt: skip
            if cmp.verdict == "worse":
                alarms += 1
                break
    # The declared rate holds over all looks together (2 standard errors of slack for 300 runs).
    assert alarms / runs <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)


def test_a_candidate_twice_as_bad_as_tolerated_is_caught() -> None:
    rng = np.random.default_rng(4)
    caught = 0
    for _ in range(50):
        s, c = int(rng.binomial(20_000, 0.8)), int(rng.binomial(20_000, 0.76))
        cmp = compare_arms("q", ArmStats.binary(20_000, s), ArmStats.binary(20_000, c), higher_is_worse=False,
                           margin=0.02, alpha=0.01, tau=0.02, min_n=100)  # fmt: skip
        caught += cmp.verdict == "worse"
    assert caught >= 45


def test_verdicts() -> None:
    good, bad = ArmStats.binary(20_000, 16_000), ArmStats.binary(20_000, 14_000)
    kwargs = {"higher_is_worse": False, "margin": 0.02, "alpha": 0.01, "tau": 0.02, "min_n": 100}
    assert compare_arms("quality", good, bad, **kwargs).verdict == "worse"  # type: ignore[arg-type]
    assert compare_arms("quality", good, good, **kwargs).verdict == "ok"  # type: ignore[arg-type]
    assert compare_arms("quality", ArmStats.binary(40, 32), bad, **kwargs).verdict == "waiting"  # type: ignore[arg-type]
    assert compare_arms("quality", ArmStats.binary(300, 240), ArmStats.binary(300, 235), **kwargs).verdict == (  # type: ignore[arg-type]
        "inconclusive"
    )
    errors = {"higher_is_worse": True, "margin": 0.01, "alpha": 0.01, "tau": 0.01, "min_n": 100}
    assert compare_arms("error_rate", ArmStats.binary(10_000, 100), ArmStats.binary(10_000, 400), **errors).verdict == (  # type: ignore[arg-type]
        "worse"
    )
    assert compare_arms("error_rate", ArmStats.binary(10_000, 100), ArmStats.binary(10_000, 100), **errors).verdict == (  # type: ignore[arg-type]
        "ok"
    )
    assert (
        compare_to_floor("agree", ArmStats.binary(500, 495), floor=0.9, alpha=0.01, tau=0.1, min_n=50).verdict == "ok"
    )
    assert compare_to_floor("agree", ArmStats.binary(500, 300), floor=0.9, alpha=0.01, tau=0.1, min_n=50).verdict == (
        "worse"
    )
