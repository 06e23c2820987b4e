"""Plain-text report for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

from margin.planner.amounts import cents
from margin.planner.plan import ClassPlan, Plan
from margin.planner.render.featured import (
    cost_of,
    crossover_text,
    featured_ids,
    infeasible_summary,
    provenance_lines,
)


def _grid(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return out


def _money(value: object) -> str:
    from decimal import Decimal

    return f"${cents(value):,}" if isinstance(value, Decimal) else "-"


def _class_section(cp: ClassPlan) -> list[str]:
    first = cp.scenarios[0]
    out = [
        f"== {cp.name} ({cp.kind}): {first.demand.requests_per_day:,.0f} requests/day today; "
        f"crossovers against API {cp.compare_to or '-'}",
        "",
        "Recommendation:",
    ]
    for s in cp.scenarios:
        rec = s.recommendation
        out.append(f"  at {s.growth:g}x: {rec.kind or 'none'}: {rec.label}")
        out += [f"      - {r}" for r in rec.reasons]
    headers = ["option", "kind"] + [f"{s.growth:g}x $/month" for s in cp.scenarios]
    headers += ["$/M tok (1x)", "util (1x)", "GPUs x peak", "crossover", "break-even util"]
    rows = []
    for option_id in featured_ids(cp):
        costs = [cost_of(s, option_id) for s in cp.scenarios]
        c0, cross = costs[0], cp.crossover_for(option_id)
        util = f"{c0.utilization:.0%}" if c0.utilization is not None else "-"
        be = cross.break_even_utilization if cross else None
        rows.append(
            [
                c0.label,
                c0.kind,
                *(_money(c.total) for c in costs),
                f"{c0.usd_per_mtok:.3f}" if c0.usd_per_mtok is not None else "-",
                util,
                f"{c0.gpus_per_replica}x{c0.peak_replicas}" if c0.kind != "api" else "-",
                crossover_text(cross) if c0.kind != "api" else "-",
                f"{be:.0%}" if be is not None else "-",
            ]
        )
    out += ["", *_grid(headers, rows)]
    out += _hybrid_lines(cp) + _sensitivity_lines(cp)
    out += ["", "Infeasible options (1x):"] + [f"  {n:4d} x {why}" for why, n in infeasible_summary(first)]
    return out


def _hybrid_lines(cp: ClassPlan) -> list[str]:
    if cp.scenarios[0].hybrid is None:
        return []
    rows = []
    for s in cp.scenarios:
        h = s.hybrid
        assert h is not None
        tiers = ", ".join(f"{t.name} {t.share_of_requests:.0%} -> {_money(t.cost.total)}" for t in h.tiers)
        rows.append([f"{s.growth:g}x", _money(h.total), _money(h.premium_total), f"{h.savings_pct:+.1f}%", tiers])
    return [
        "",
        "Hybrid tier mix vs premium API for everything:",
        *_grid(["scenario", "hybrid", "premium only", "savings", "tiers"], rows),
    ]


def _sensitivity_lines(cp: ClassPlan) -> list[str]:
    rows = []
    for r in cp.sensitivity:
        down = f"x{r.down.factor:g} -> {r.down.kind}" if r.down else "no flip down to x0.25"
        up = f"x{r.up.factor:g} -> {r.up.kind}" if r.up else "no flip up to x4"
        rows.append([r.assumption, r.baseline_kind or "none", down, up])
    return [
        "",
        f"Sensitivity (what flips the {cp.scenarios[0].growth:g}x answer):",
        *_grid(["assumption", "today", "lower", "higher"], rows),
    ]


def render_table(plan: Plan) -> str:
    p = plan.profile
    out = [
        f"margin plan: {p.name}",
        f"sensitivity {p.sensitivity}, ops capacity {p.ops_capacity}, "
        f"peak/average {p.peak_factor():.2f}, growth {', '.join(f'{g:g}x' for g in p.growth)}",
        *provenance_lines(plan),
        "",
    ]
    for cp in plan.classes:
        out += [*_class_section(cp), ""]
    a = plan.catalog.assumptions
    out.append("Key assumptions (override any in the profile's `overrides:`):")
    for name in (
        "target_utilization",
        "bandwidth_efficiency",
        "tp_scaling_exponent",
        "input_token_work",
        "spot_interruption_overhead",
        "hours_per_month",
    ):
        fig = getattr(a, name)
        out.append(f"  {name} = {fig.value:g}  [{fig.source}]")
    out.append(
        f"  engineer_monthly_usd = {plan.catalog.costs.engineer_monthly_usd.value}  "
        f"[{plan.catalog.costs.engineer_monthly_usd.source}]"
    )
    return "\n".join(out) + "\n"
