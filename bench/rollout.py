"""Automatic rollback, simulated: 1,000 rollouts each of
(a) a candidate equal to stable, (b) one 5 points worse on a pass/fail quality metric with an 80%
baseline, (c) one with twice the stable error rate, and (d) one worse on quality by exactly the margin
(still within what is tolerated: the hardest case for margin's false-alarm guarantee; `--at-margin`,
slow, since margin rightly neither rolls it back nor promotes it and waits until `--max-seconds`);
run through margin's own decision function (margin.rollout.decide: always-valid confidence sequences)
and, on the same simulated traffic model, a Flagger-style fixed-window analysis (each interval checks
the canary's window against fixed thresholds; `threshold` failed checks roll back, a passing check
moves to the next weight, passing the last weight promotes).

Traffic: `--rps` requests per second to the model group, split by the step's share; each request
fails with the arm's error rate and each answer passes the quality grader with the arm's pass rate.
margin looks every `--tick` seconds; Flagger's interval is `--interval` seconds.

    python bench/rollout.py [--rollouts 1000] [--rps 100] [--seed 7]
    python bench/rollout.py --quality-drop 0.03 --stable-quality 0.6   # scenarios it was not tuned on

`flagger/N` is Flagger with the fewest failed checks that keep its false rollbacks of (a) within
margin's false-alarm rate; `flagger/M (d)` the same for (d), when a threshold up to 40 does.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from margin.config.rollout import CanaryStep, Margins, RolloutSettings
from margin.rollout.decide import decide
from margin.storage.rollouts import Arm, ArmWindow, RolloutRecord


@dataclass(frozen=True)
class Scenario:
    name: str
    candidate_errors: float
    candidate_quality: float
    bad: bool  # a rollback is the right outcome


def scenarios(args: argparse.Namespace) -> tuple[Scenario, ...]:
    """The issue's three, from the stable rates on the command line, and (d): a candidate worse by
    exactly the margin on quality, the hardest candidate margin's guarantee still covers (a rollback
    of it is a false alarm too)."""
    errors, quality = args.stable_errors, args.stable_quality
    drop = args.quality_drop
    return (
        Scenario("(a) equal", errors, quality, bad=False),
        Scenario(f"(b) {drop * 100:g} points worse quality", errors, quality - drop, bad=True),
        Scenario(f"(c) {args.error_factor:g} times the error rate", args.error_factor * errors, quality, bad=True),
        Scenario("(d) worse by exactly the margin (quality)", errors, quality - args.margin, bad=False),
    )


@dataclass
class Outcome:
    rolled_back: int = 0
    promoted: int = 0
    undecided: int = 0
    canary_requests_to_rollback: list[int] | None = None
    seconds_to_decision: list[float] | None = None

    def __post_init__(self) -> None:
        self.canary_requests_to_rollback = []
        self.seconds_to_decision = []


def settings(args: argparse.Namespace) -> RolloutSettings:
    steps = [CanaryStep(share=s, min_requests=args.min_requests, min_duration_s=args.interval) for s in args.steps]
    return RolloutSettings(
        steps=steps, false_alarm_rate=args.alpha, min_requests=args.min_requests,
        margins=Margins(error_rate=args.margin, quality=args.margin, latency=None, ttft=None),
    )  # fmt: skip


def record(step: int, started: float) -> RolloutRecord:
    return RolloutRecord(
        rollout_id="sim", model_group="g", stable="s", candidate="c", state="canary", step=step, paused=False,
        plan={}, created_at=0.0, updated_at=started, stage_started_at=started, version=0, created_by="bench",
        reason="",
    )  # fmt: skip


def windows(counts: np.ndarray) -> list[ArmWindow]:
    """counts[step, arm, (requests, errors, quality_hits)] -> the store's windows."""
    out = []
    arms: tuple[Arm, Arm] = ("stable", "candidate")
    for step in range(counts.shape[0]):
        for a, arm in enumerate(arms):
            n, err, hits = (int(x) for x in counts[step, a])
            if n:
                ok = n - err
                out.append(ArmWindow("sim", step, arm, n, err, ok, Decimal(0), Decimal(0), ok, float(hits),
                                     float(hits), 0))  # fmt: skip
    return out


def simulate_margin(
    scenario: Scenario, conf: RolloutSettings, args: argparse.Namespace, rng: np.random.Generator
) -> Outcome:
    out = Outcome()
    stable = [args.stable_errors, args.stable_quality]
    rates = np.array([stable, [scenario.candidate_errors, scenario.candidate_quality]])
    per_tick = int(args.rps * args.tick)
    for _ in range(args.rollouts):
        counts = np.zeros((len(conf.steps), 2, 3), dtype=np.int64)
        step, started, now = 0, 0.0, 0.0
        while now < args.max_seconds:
            now += args.tick
            candidate_n = rng.binomial(per_tick, conf.steps[step].share)
            for a, n in enumerate((per_tick - candidate_n, candidate_n)):
                errors = rng.binomial(n, rates[a, 0])
                counts[step, a] += (n, errors, rng.binomial(n - errors, rates[a, 1]))
            decision = decide(record(step, started), conf, windows(counts), now)
            if decision.action == "advance":
                step, started = decision.to_step, now
            elif decision.action in ("rollback", "promote"):
                break
        else:
            out.undecided += 1
            continue
        if decision.action == "rollback":
            out.rolled_back += 1
            assert out.canary_requests_to_rollback is not None
            out.canary_requests_to_rollback.append(int(counts[:, 1, 0].sum()))
        else:
            out.promoted += 1
        assert out.seconds_to_decision is not None
        out.seconds_to_decision.append(now)
    return out


def simulate_flagger(
    scenario: Scenario, args: argparse.Namespace, rng: np.random.Generator, threshold: int | None = None
) -> Outcome:
    """Flagger's analysis loop: every interval, the canary's window must meet each threshold
    (request success rate >= 1 - (stable error rate + margin), quality >= stable quality - margin)."""
    out = Outcome()
    per_interval = int(args.rps * args.interval)
    min_success, min_quality = 1 - (args.stable_errors + args.margin), args.stable_quality - args.margin
    for _ in range(args.rollouts):
        weight, failures, canary, now = 0, 0, 0, 0.0
        while True:
            now += args.interval
            n = rng.binomial(per_interval, args.steps[weight])
            errors = rng.binomial(n, scenario.candidate_errors)
            hits = rng.binomial(n - errors, scenario.candidate_quality)
            canary += n
            passed = n > 0 and (n - errors) / n >= min_success and hits / max(n - errors, 1) >= min_quality
            if not passed:
                failures += 1
                if failures >= (threshold or args.threshold):
                    out.rolled_back += 1
                    assert out.canary_requests_to_rollback is not None
                    out.canary_requests_to_rollback.append(canary)
                    break
            elif weight == len(args.steps) - 1:
                out.promoted += 1
                break
            else:
                weight += 1
        assert out.seconds_to_decision is not None
        out.seconds_to_decision.append(now)
    return out


def calibrate_flagger(args: argparse.Namespace, null: Scenario) -> int | None:
    """The fewest failed checks that keep Flagger's false rollbacks of `null` <= margin's false-alarm
    rate, on a seed of its own (what an operator tuning Flagger to margin's guarantee would pick);
    None when no threshold up to 40 does."""
    for threshold in range(1, 41):
        outcome = simulate_flagger(null, args, np.random.default_rng(args.seed + 1), threshold)
        if outcome.rolled_back <= args.alpha * args.rollouts:
            return threshold
    return None


def line(name: str, scenario: Scenario, result: Outcome, total: int) -> str:
    assert result.canary_requests_to_rollback is not None and result.seconds_to_decision is not None
    rate = result.rolled_back / total
    what = f"detected {rate:6.1%}" if scenario.bad else f"false rollbacks {rate:6.1%}"
    name = name[:16]
    median = statistics.median(result.canary_requests_to_rollback) if result.canary_requests_to_rollback else None
    seconds = statistics.median(result.seconds_to_decision) if result.seconds_to_decision else None
    return (
        f"  {name:<16} {what:<24} promoted {result.promoted / total:6.1%}  undecided {result.undecided / total:5.1%}  "
        f"median canary requests to rollback {median if median is not None else '-':>6}  "
        f"median time to a decision {f'{seconds:.0f} s' if seconds is not None else '-'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--rps", type=float, default=100.0, help="requests per second to the model group")
    parser.add_argument("--tick", type=float, default=5.0, help="seconds between margin's looks")
    parser.add_argument("--steps", type=float, nargs="+", default=[0.01, 0.05, 0.25, 0.5])
    parser.add_argument("--min-requests", type=int, default=200, help="per arm and step (margin)")
    parser.add_argument("--alpha", type=float, default=0.01, help="margin's declared false-alarm rate")
    parser.add_argument("--margin", type=float, default=0.02, help="tolerated worsening (both rules)")
    parser.add_argument("--interval", type=float, default=60.0, help="Flagger's analysis interval, seconds")
    parser.add_argument("--threshold", type=int, default=5, help="Flagger's failed checks before rollback")
    parser.add_argument("--max-seconds", type=float, default=6 * 3600, help="a rollout still undecided is cut here")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--stable-errors", type=float, default=0.05, help="the stable arm's error rate")
    parser.add_argument("--stable-quality", type=float, default=0.80, help="the stable arm's pass rate")
    parser.add_argument("--quality-drop", type=float, default=0.05, help="how much worse (b) is on quality")
    parser.add_argument("--at-margin", action="store_true", help="also run (d) (slow: margin waits, as it should)")
    parser.add_argument("--error-factor", type=float, default=2.0, help="(c)'s error rate over the stable one")
    args = parser.parse_args()
    conf = settings(args)
    print(
        f"{args.rollouts} rollouts per scenario; {args.rps:g} req/s to the group; steps {args.steps}; stable error "
        f"rate {args.stable_errors:.0%}, pass rate {args.stable_quality:.0%}; margin {args.margin}; margin's "
        f"false-alarm rate {args.alpha}, {args.min_requests} requests per arm and step; Flagger: "
        f"{args.interval:g} s windows, threshold {args.threshold}"
    )
    cases = scenarios(args)
    calibrated = calibrate_flagger(args, cases[0])
    at_margin = calibrate_flagger(args, cases[3])
    print(
        f"Flagger calibrated (another seed): threshold {calibrated}, the smallest with <= {args.alpha:.0%} false "
        f"rollbacks on (a); at the margin, (d): {at_margin if at_margin is not None else 'none up to 40'}"
    )
    for scenario in cases if args.at_margin else cases[:3]:
        started = time.perf_counter()
        ours = simulate_margin(scenario, conf, args, np.random.default_rng(args.seed))
        rules = [("flagger", args.threshold)]
        rules += [(f"flagger/{t}{tag}", t) for t, tag in ((calibrated, ""), (at_margin, " (d)")) if t is not None]
        results = [(name, simulate_flagger(scenario, args, np.random.default_rng(args.seed), t)) for name, t in rules]
        print(f"{scenario.name} ({time.perf_counter() - started:.1f} s)")
        print(line("margin", scenario, ours, args.rollouts))
        for name, result in results:
            print(line(name, scenario, result, args.rollouts))


if __name__ == "__main__":
    main()
