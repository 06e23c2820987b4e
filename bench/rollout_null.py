"""False rollbacks where they are hardest to avoid: a candidate worse by exactly the margin (the
least favourable case the guarantee covers), watched after *every* request, on 0/1 signals at
several baselines and two ways of splitting traffic. An equal candidate is run too.

Each run draws requests one at a time; a request goes to the candidate with the canary share
(`canary`: 1% until the candidate has had 200 requests (its first `--min-n` drawn at once, since no
verdict comes before them), 5% until 500, 25% until 2,000, then 50%;
`even`: 50% throughout). After every request, once both arms have `--min-n`, margin's rollback test
(margin.rollout.stats: one-sided normal mixture, variance under the null) is applied; a run counts
as a false rollback the first time it says `worse`. The test is vectorised over runs here and
checked against the library's own functions on random inputs first.

    python bench/rollout_null.py [--runs 2000] [--requests 20000] [--alpha 0.01] [--seed 11]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy.special import log_ndtr

from margin.rollout.decide import mixture_scale
from margin.rollout.stats import ArmStats, compare_arms, difference_variance, mixture_halfwidth

# (signal, stable rate, margin, higher_is_worse): pass rates of a quality grader and error rates.
CASES = (
    ("quality", 0.60, 0.02, False),
    ("quality", 0.80, 0.02, False),
    ("quality", 0.95, 0.02, False),
    ("error_rate", 0.05, 0.02, True),
    ("error_rate", 0.01, 0.01, True),
)


def null_rates(
    n_s: np.ndarray, x_s: np.ndarray, n_c: np.ndarray, x_c: np.ndarray, shift: float
) -> tuple[np.ndarray, np.ndarray]:
    """Farrington and Manning's closed form for the restricted maximum-likelihood rates under
    candidate - stable = shift (the library solves the same equation by bisection)."""
    p1, p2, ratio, d = x_c / n_c, x_s / n_s, n_s / n_c, shift
    a = 1 + ratio
    b = -(1 + ratio + p1 + ratio * p2 + d * (ratio + 2))
    c = d * d + d * (2 * p1 + ratio + 1) + p1 + ratio * p2
    e = -p1 * d * (1 + d)
    v = b**3 / (27 * a**3) - b * c / (6 * a**2) + e / (2 * a)
    u = np.copysign(np.sqrt(np.maximum(b**2 / (9 * a**2) - c / (3 * a), 0.0)), v)
    safe_u = np.where(u == 0, 1.0, u)
    w = (math.pi + np.arccos(np.clip(np.where(u == 0, 0.0, v / safe_u**3), -1, 1))) / 3
    cand = np.clip(2 * u * np.cos(w) - b / (3 * a), max(0.0, d), min(1.0, 1 + d))
    return np.clip(cand - d, 0, 1), cand


def worse(n_s: np.ndarray, x_s: np.ndarray, n_c: np.ndarray, x_c: np.ndarray, case: tuple[str, float, float, bool],
          alpha: float) -> np.ndarray:  # fmt: skip
    _, _, margin, higher_is_worse = case
    sign = 1.0 if higher_is_worse else -1.0
    p_s, p_c = null_rates(n_s, x_s, n_c, x_c, sign * margin)
    var = (n_s * p_s * (1 - p_s) + 0.25) / (n_s + 1) / n_s + (n_c * p_c * (1 - p_c) + 0.25) / (n_c + 1) / n_c
    x = sign * (x_c / n_c - x_s / n_s) - margin
    tau2 = mixture_scale(margin) ** 2
    total = var + tau2
    log_lambda = (
        math.log(2) + 0.5 * np.log(var / total) + x * x * tau2 / (2 * var * total)
        + log_ndtr(x * np.sqrt(tau2 / (var * total)))
    )  # fmt: skip
    return (x > 0) & (log_lambda >= math.log(1 / alpha))


def self_check(rng: np.random.Generator, alpha: float) -> None:
    """The vectorised test must agree with margin.rollout.stats on random counts."""
    mismatches = 0
    for _ in range(400):
        case = CASES[rng.integers(len(CASES))]
        n_s, n_c = int(rng.integers(100, 20_000)), int(rng.integers(100, 5_000))
        rate = case[1]
        shift = (case[2] if case[3] else -case[2]) * rng.uniform(0, 2.5)
        x_s, x_c = int(rng.binomial(n_s, rate)), int(rng.binomial(n_c, min(max(rate + shift, 0), 1)))
        stable, candidate = ArmStats.binary(n_s, x_s), ArmStats.binary(n_c, x_c)
        mine = bool(worse(*(np.array([float(v)]) for v in (n_s, x_s, n_c, x_c)), case, alpha)[0])
        theirs = compare_arms(case[0], stable, candidate, higher_is_worse=case[3], margin=case[2], alpha=alpha,
                              tau=mixture_scale(case[2]), min_n=1).verdict == "worse"  # fmt: skip
        mismatches += mine != theirs
        sign = 1.0 if case[3] else -1.0
        p_s, p_c = null_rates(*(np.array([float(v)]) for v in (n_s, x_s, n_c, x_c)), sign * case[2])
        v = (n_s * p_s * (1 - p_s) + 0.25) / (n_s + 1) / n_s + (n_c * p_c * (1 - p_c) + 0.25) / (n_c + 1) / n_c
        assert math.isclose(float(v[0]), difference_variance(stable, candidate, sign * case[2]), rel_tol=1e-6)
    assert mismatches <= 2, f"{mismatches} of 400 verdicts differ from the library's"  # boundary ties only
    assert math.isfinite(mixture_halfwidth(1e-4, 0.02, alpha))


def run(case: tuple[str, float, float, bool], candidate_rate: float, split: str, args: argparse.Namespace,
        rng: np.random.Generator) -> tuple[float, float]:  # fmt: skip
    """Requests are drawn in blocks of `--block` per run (the canary share is set at each block's
    start); the test is applied after every request inside the block."""
    runs, block = args.runs, args.block
    n = np.zeros((2, runs, 1))
    x = np.zeros((2, runs, 1))
    if split == "canary":  # no verdict before the candidate's `min_n`-th request: draw up to it at once
        n[1] = args.min_n
        n[0] = args.min_n + rng.negative_binomial(args.min_n, 0.01, (runs, 1))
        x[1] = rng.binomial(args.min_n, candidate_rate, (runs, 1))
        x[0] = rng.binomial(n[0].astype(np.int64), case[1])
    alarmed = np.zeros(runs, dtype=bool)
    for _ in range(args.requests // block):
        share = np.full((runs, 1), 0.5) if split == "even" else _canary_share(n[1])
        to_candidate = rng.random((runs, block)) < share
        hit = rng.random((runs, block)) < np.where(to_candidate, candidate_rate, case[1])
        n_c = n[1] + np.cumsum(to_candidate, axis=1)
        n_s = n[0] + np.cumsum(~to_candidate, axis=1)
        x_c = x[1] + np.cumsum(hit & to_candidate, axis=1)
        x_s = x[0] + np.cumsum(hit & ~to_candidate, axis=1)
        ready = (np.minimum(n_s, n_c) >= args.min_n) & ~alarmed[:, None]
        if ready.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                hits = worse(n_s, x_s, n_c, x_c, case, args.alpha) & ready
            alarmed |= hits.any(axis=1)
        n = np.stack([n_s[:, -1:], n_c[:, -1:]])
        x = np.stack([x_s[:, -1:], x_c[:, -1:]])
    return float(alarmed.mean()), float(np.median(n[1]))


def _canary_share(candidate_n: np.ndarray) -> np.ndarray:
    return np.select([candidate_n < 200, candidate_n < 500, candidate_n < 2_000], [0.01, 0.05, 0.25], 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=20_000, help="requests per run after the first look")
    parser.add_argument("--alpha", type=float, default=0.01, help="the false-alarm rate of the one signal")
    parser.add_argument("--block", type=int, default=250, help="requests drawn at once per run")
    parser.add_argument("--min-n", type=int, default=100, help="requests per arm before any verdict")
    parser.add_argument("--equal-too", action="store_true", help="also run an equal candidate")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    self_check(rng, args.alpha)
    print(f"{args.runs} runs per line, {args.requests:,} requests each, a look after every request; alpha {args.alpha}")
    worst = 0.0
    for case in CASES:
        signal, rate, margin, higher_is_worse = case
        at_margin = rate + margin if higher_is_worse else rate - margin
        for split in ("canary", "even"):
            for label, candidate_rate in (("at the margin", at_margin), ("equal", rate))[: 1 + args.equal_too]:
                started = time.perf_counter()
                rate_alarm, median_c = run(case, candidate_rate, split, args, rng)
                if label == "at the margin":
                    worst = max(worst, rate_alarm)
                print(f"  {signal:<10} stable {rate:.2f} margin {margin:.2f} {split:<6} candidate {label:<13} "
                      f"false rollbacks {rate_alarm:6.2%}  (candidate requests per run, median {median_c:,.0f}; "
                      f"{time.perf_counter() - started:.1f} s)")  # fmt: skip
    print(f"worst false-rollback rate at the margin: {worst:.2%} against alpha {args.alpha:.2%}")


if __name__ == "__main__":
    main()
