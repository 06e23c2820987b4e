"""Recommendation per workload class: hard constraints first, then cost, then latency."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from margin.planner.amounts import cents
from margin.planner.constraints import violation
from margin.planner.costing import OptionCost
from margin.planner.evaluate import PreparedClass
from margin.planner.hybrid import HybridResult
from margin.planner.profile import Profile

COST_TIE = Decimal("0.05")  # options within 5% of the cheapest are a tie that latency decides


@dataclass(frozen=True)
class Contender:
    kind: str
    option_id: str
    label: str
    total: Decimal
    usd_per_mtok: Decimal | None
    ttft_ms: float | None
    feasible: bool
    reason: str
    constraint: str | None


@dataclass(frozen=True)
class Recommendation:
    class_name: str
    growth: float
    kind: str | None
    option_id: str | None
    label: str
    monthly: Decimal | None
    reasons: tuple[str, ...]


def contenders(
    costs: Sequence[OptionCost], hybrid: HybridResult | None, prepared: PreparedClass, profile: Profile
) -> list[Contender]:
    apis = {a.id: a.api for a in prepared.apis}
    out = [
        Contender(
            c.kind,
            c.option_id,
            c.label,
            c.total,
            c.usd_per_mtok,
            c.ttft_ms,
            c.feasible,
            c.reason,
            violation(c.kind, apis.get(c.option_id), profile),
        )
        for c in costs
    ]
    if hybrid is not None:
        out.append(
            Contender(
                "hybrid",
                "hybrid",
                "hybrid tier mix",
                hybrid.total,
                None,
                None,
                hybrid.feasible,
                hybrid.reason,
                hybrid.constraint,
            )
        )
    return out


def recommend(
    options: Sequence[Contender], class_name: str, growth: float, sla_ttft_ms: float | None
) -> Recommendation:
    reasons = _constraint_reasons(options)
    allowed = [o for o in options if o.constraint is None and o.feasible]
    if not allowed:
        infeasible = sorted({o.reason for o in options if o.constraint is None and not o.feasible})[:3]
        detail = "; ".join(infeasible) if infeasible else "every option is excluded by a hard constraint"
        return Recommendation(
            class_name, growth, None, None, "no feasible option", None, (*reasons, f"nothing left: {detail}")
        )
    cheapest = min(allowed, key=lambda o: o.total)
    chosen = _latency_tiebreak(allowed, cheapest, sla_ttft_ms)
    reasons += [f"cost: {chosen.label} at ${cents(chosen.total):,}/month" + _per_mtok(chosen)]
    for kind, best in _best_per_kind(allowed).items():
        if kind != chosen.kind:
            extra = (best.total / chosen.total - 1) * 100 if chosen.total else Decimal(0)
            reasons.append(f"best {kind}: {best.label} at ${cents(best.total):,}/month ({extra:+.0f}%)")
    if chosen is not cheapest:
        reasons.append(f"latency: chosen over {cheapest.label} (within 5% on cost, lower estimated TTFT)")
    return Recommendation(class_name, growth, chosen.kind, chosen.option_id, chosen.label, chosen.total, tuple(reasons))


def _per_mtok(option: Contender) -> str:
    return f" (${option.usd_per_mtok:.3f}/M tokens)" if option.usd_per_mtok is not None else ""


def _constraint_reasons(options: Sequence[Contender]) -> list[str]:
    counts: dict[str, int] = {}
    for option in options:
        if option.constraint is not None:
            counts[option.constraint] = counts.get(option.constraint, 0) + 1
    return [f"hard constraint: {why} ({n} options excluded)" for why, n in sorted(counts.items())]


def _best_per_kind(options: Sequence[Contender]) -> dict[str, Contender]:
    best: dict[str, Contender] = {}
    for option in options:
        if option.kind not in best or option.total < best[option.kind].total:
            best[option.kind] = option
    return best


def _latency_tiebreak(allowed: Sequence[Contender], cheapest: Contender, sla_ttft_ms: float | None) -> Contender:
    if sla_ttft_ms is None:
        return cheapest
    limit = cheapest.total * (1 + COST_TIE)
    tied = [o for o in allowed if o.total <= limit]
    at_sla: float = sla_ttft_ms

    def ttft(option: Contender) -> float:
        # An API with no published TTFT is taken to just meet the SLA: no better, no worse.
        return option.ttft_ms if option.ttft_ms is not None else at_sla

    return min(tied, key=lambda o: (ttft(o), o.total))
