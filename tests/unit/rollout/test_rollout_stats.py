"""The confidence sequence against its closed form and its promise: an equal candidate, looked at
after every request, is rarely ever declared worse; a clearly worse one is."""

from __future__ import annotations

import math

import numpy as np
import pytest

from margin.rollout.stats import ArmStats, compare_arms, compare_to_floor, mixture_halfwidth


def test_halfwidth_matches_the_normal_mixture_boundary_solved_by_hand() -> None:
    v, tau, alpha = 0.0004, 0.04, 0.01
    # Lambda(theta_hat - theta = h) == 1 / alpha at the boundary.
    h = mixture_halfwidth(v, tau, alpha)
    lam = math.sqrt(v / (v + tau**2)) * math.exp(tau**2 * h**2 / (2 * v * (v + tau**2)))
    assert lam == pytest.approx(1 / alpha, rel=1e-9)
    assert mixture_halfwidth(0.0, tau, alpha) == math.inf


def test_shrunk_variance_never_treats_an_error_free_arm_as_certain() -> None:
    arm = ArmStats.binary(50, 0)
    assert arm.mean == 0 and 0 < arm.variance < 0.25 / 50


def test_an_equal_candidate_watched_continuously_is_rarely_called_worse() -> None:
    rng = np.random.default_rng(3)
    alarms = 0
    runs, looks = 300, 60
    for _ in range(runs):
        s = np.cumsum(rng.random(looks * 50) < 0.8)
        c = np.cumsum(rng.random(looks * 50) < 0.8)
        for n in range(50, looks * 50 + 1, 50):
            cmp = compare_arms("quality", ArmStats.binary(n, int(s[n - 1])), ArmStats.binary(n, int(c[n - 1])),
                               higher_is_worse=False, margin=0.0, alpha=0.05, tau=0.04, min_n=50)  # fmt: skip
            if cmp.verdict == "worse":
                alarms += 1
                break
    assert alarms / runs <= 0.05  # the declared rate holds over all 60 looks together


def test_verdicts() -> None:
    good, bad = ArmStats.binary(20_000, 16_000), ArmStats.binary(20_000, 14_000)
    kwargs = {"higher_is_worse": False, "margin": 0.02, "alpha": 0.01, "tau": 0.04, "min_n": 100}
    assert compare_arms("quality", good, bad, **kwargs).verdict == "worse"  # type: ignore[arg-type]
    assert compare_arms("quality", good, good, **kwargs).verdict == "ok"  # type: ignore[arg-type]
    assert compare_arms("quality", ArmStats.binary(40, 32), bad, **kwargs).verdict == "waiting"  # type: ignore[arg-type]
    assert compare_arms("quality", ArmStats.binary(300, 240), ArmStats.binary(300, 235), **kwargs).verdict == (  # type: ignore[arg-type]
        "inconclusive"
    )
    assert (
        compare_to_floor("agree", ArmStats.binary(500, 495), floor=0.9, alpha=0.01, tau=0.1, min_n=50).verdict == "ok"
    )
    assert compare_to_floor("agree", ArmStats.binary(500, 300), floor=0.9, alpha=0.01, tau=0.1, min_n=50).verdict == (
        "worse"
    )
