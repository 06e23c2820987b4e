"""Gates: the verdict on a candidate, from a paired comparison and a model group's `gates:`.

Quality is a non-inferiority test: the candidate passes when the one-sided lower confidence bound of
its mean quality minus the baseline's is above `-max_drop` ("we are `confidence` sure it is at most
`max_drop` worse"). The other gates are ceilings on the candidate's own figures. A figure the run did
not measure fails its gate (it is never assumed fine). Coverage always applies: the candidate must
have run every item the baseline ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from margin.config.gates import GatesConfig
from margin.evals.compare import Comparison

Measured = float | Decimal | None


@dataclass(frozen=True, slots=True)
class GateResult:
    name: str
    passed: bool
    measured: Measured  # the candidate's figure (quality: the lower bound of the difference)
    bound: float | Decimal  # the limit it was held to
    rule: Literal[">", "<=", ">="]  # passed when `measured rule bound`
    detail: str


@dataclass(frozen=True, slots=True)
class GateVerdict:
    gates: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.passed)


def apply_gates(comparison: Comparison, gates: GatesConfig) -> GateVerdict:
    results = [_coverage(comparison)]
    if gates.quality is not None:
        results.append(_quality(comparison, gates.quality.max_drop, gates.quality.confidence))
    candidate = comparison.candidate
    ceilings: list[tuple[str, Measured, float | Decimal | None, str]] = [
        ("p95_latency_ms", candidate.latency_p95_ms, gates.p95_latency_ms, "no call answered"),
        ("ttft_p95_ms", candidate.ttft_p95_ms, gates.ttft_p95_ms, "time to first token is measured on streamed runs "
         "(margin eval run --stream)"),
        ("error_rate", candidate.error_rate, gates.error_rate, "no item was run"),
        ("cost_per_success_usd", candidate.cost.per_success_usd, gates.cost_per_success_usd,
         f"{candidate.successes - candidate.cost.priced} answered calls reported no cost (streamed runs carry no "
         "x-margin-cost-usd header)"),
    ]  # fmt: skip
    results.extend(_ceiling(name, value, bound, why) for name, value, bound, why in ceilings if bound is not None)
    return GateVerdict(tuple(results))


def _coverage(comparison: Comparison) -> GateResult:
    paired, missing = len(comparison.diffs), len(comparison.only_baseline)
    expected = paired + missing
    share = paired / expected if expected else 0.0
    detail = f"{paired} of {expected} baseline items run by the candidate"
    if missing:
        detail += f" (missing: {', '.join(comparison.only_baseline[:5])}{', ...' if missing > 5 else ''})"
    return GateResult("coverage", bool(expected) and not missing, share, 1.0, ">=", detail)


def _quality(comparison: Comparison, max_drop: float, confidence: float) -> GateResult:
    bound = comparison.lower_bound(confidence)
    if bound is None or comparison.mean_diff is None:
        return GateResult("quality", False, None, -max_drop, ">", "no paired items to compare")
    detail = (
        f"mean difference {comparison.mean_diff:+.4f} over {len(comparison.diffs)} paired items; "
        f"{confidence:.0%} lower bound {bound:+.4f} vs -{max_drop:g}"
    )
    return GateResult("quality", bound > -max_drop, bound, -max_drop, ">", detail)


def _ceiling(name: str, value: Measured, bound: float | Decimal, unmeasured: str) -> GateResult:
    if value is None:
        return GateResult(name, False, None, bound, "<=", f"not measured: {unmeasured}")
    passed = (Decimal(value) <= Decimal(bound)) if isinstance(bound, Decimal) else float(value) <= bound
    return GateResult(name, passed, value, bound, "<=", f"{_fmt(value)} vs at most {_fmt(bound)}")


def _fmt(value: float | Decimal) -> str:
    return format(value, "f") if isinstance(value, Decimal) else f"{value:.4g}"
