"""The what-if report as JSON, a text table and per-request decisions (JSONL), money as exact
Decimal strings (USD)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from margin.whatif.routing import CurvePoint
from margin.whatif.run import Report, Sampling

CENT = Decimal("0.01")
SAMPLE_CENTS = Decimal("0.0001")  # a sample's cost is often under a cent
NOT_BUILT = (
    "one cheaper tier per run (`tiers.weak`): to compare several cheaper tiers, run once per tier; "
    "ungraded misses are priced at the weak tier on their recorded token counts"
)


def _money(value: Decimal) -> str:
    return str(value)


def _point(point: CurvePoint) -> dict[str, Any]:
    return {
        "weak_share": round(point.weak_share, 6),
        "threshold": None if point.threshold == float("inf") else point.threshold,
        "cost_usd": _money(point.cost),
        "quality_ratio": round(point.quality_ratio, 6),
        "quality_interval": [round(point.low, 6), round(point.high, 6)],
    }


def sampling_json(sampling: Sampling | None) -> dict[str, Any] | None:
    if sampling is None:
        return None
    plan, result = sampling.plan, sampling.result
    body: dict[str, Any] = {
        "needed": plan.needed,
        "population": plan.population,
        "drawn": len(plan.drawn),
        "census": plan.census,
        "estimated_cost_usd": None if plan.estimated_cost_usd is None else _money(plan.estimated_cost_usd),
        "refusal": plan.refusal,
    }
    if result is not None:
        body |= {
            "calls": result.calls,
            "judge_calls": result.judge_calls,
            "graded": len(result.grades),
            "failed": len(result.failed),
            "undecided": result.undecided,
            "not_sent": result.not_sent,
            "spent_usd": _money(result.spent_usd),
            "unmetered_calls": result.unmetered,
        }
    return body


def report_json(report: Report) -> dict[str, Any]:
    cache = report.cache
    routing: dict[str, Any] = {"status": report.routing_note}
    if report.routing is not None:
        projection = report.routing
        routing |= {
            "requests": len(projection.rows),
            "graded_requests": projection.graded_requests,
            "extrapolated_requests": len(projection.rows) - projection.graded_requests,
            "quality_target": projection.target,
            "confidence": projection.confidence,
            "strong_quality": round(projection.strong_quality, 6),
            "weak_quality": round(projection.weak_quality, 6),
            "operating_point": _point(projection.point),
            "saved_usd": _money(report.routing_saved),
            "alone_saved_usd": _money(projection.alone_saved),
            "curve": [_point(p) for p in projection.curve],
        }
    return {
        "records": len(report.records),
        "issues": report.issues,
        "estimated_usage": sum(1 for r in report.records if r.usage_estimated),
        "volume_only": sum(1 for r in report.records if not r.body),
        "unknown_models": report.unknown_models,
        "current_cost_usd": _money(report.current),
        "cache": {
            "exact_hits": cache.count("exact"),
            "semantic_hits": cache.count("semantic"),
            "misses": cache.count("miss"),
            "ineligible": cache.count("ineligible"),
            "saved_exact_usd": _money(report.known_cost("exact")),
            "saved_semantic_usd": _money(report.known_cost("semantic")),
            "cost_after_usd": _money(report.current - report.cache_saved),
        },
        "routing": routing,
        "sampling": sampling_json(report.sampling),
        "all_levers_cost_usd": _money(report.all_levers),
        "savings_share": float((report.current - report.all_levers) / report.current) if report.current else 0.0,
        "volume": [row.__dict__ for row in report.volume],
        "self_hosting": [
            {
                "class": c.class_name,
                "multiplier": c.multiplier,
                "recommended": c.recommended,
                "monthly_usd": None if c.monthly_usd is None else _money(c.monthly_usd),
            }
            for c in report.plan
        ],
        "fleet": [
            {
                "multiplier": f.multiplier,
                "policy": f.policy,
                "minutes": f.minutes,
                "total_usd": _money(f.total_usd),
                "monthly_usd": _money(f.monthly_usd),
                "overflowed": f.overflowed,
                "rejected": f.rejected,
                "always_on_usd": _money(f.always_on_usd),
                "api_only_usd": None if f.api_only_usd is None else _money(f.api_only_usd),
            }
            for f in report.fleet
        ],
        "not_built": [NOT_BUILT],
    }


def report_table(report: Report) -> str:
    def line(name: str, cost: Decimal, note: str = "") -> str:
        saved = report.current - cost
        share = f"{saved / report.current:7.1%}" if report.current else "      -"
        return f"{name:<28}{cost.quantize(CENT):>14}{saved.quantize(CENT):>14}{share:>9}  {note}"

    lines = [f"{'lever':<28}{'cost USD':>14}{'saved USD':>14}{'saved':>9}", "-" * 70]
    lines.append(line("current (recorded)", report.current, f"{len(report.records)} requests"))
    cache = report.cache
    hits = f"{cache.count('exact')} exact + {cache.count('semantic')} semantic hits"
    lines.append(line("cache", report.current - report.cache_saved, hits))
    if report.routing is not None:
        point = report.routing.point
        note = (
            f"{point.weak_share:.1%} of misses to weak, quality {point.quality_ratio:.1%} of strong "
            f"[{point.low:.1%}, {point.high:.1%}], threshold {point.threshold:.4f}"
        )
        lines.append(line("router alone (no cache)", report.current - report.routing.alone_saved, "same threshold"))
        lines.append(line("router (after cache)", report.current - report.routing_saved, note))
    lines.append(line("all levers", report.all_levers))
    for row in report.volume:
        lines.append(
            f"volume x{row.multiplier:g}: {row.requests_per_day:,.0f} requests/day, "
            f"{row.upstream_per_day:,.0f} upstream after the cache ({row.weak_per_day:,.0f} to the weak tier)"
        )
    lines += selfhost_lines(report)
    lines.append("")
    lines += sampling_lines(report.sampling)
    lines.append(f"routing: {report.routing_note}")
    lines += [f"issue: {issue}" for issue in report.issues[:20]]
    if len(report.issues) > 20:
        lines.append(f"... {len(report.issues) - 20} more issues in report.json")
    return "\n".join(lines) + "\n"


def selfhost_lines(report: Report) -> list[str]:
    """The planner's figures and the fleet simulator's, per multiplier."""
    lines: list[str] = []
    for choice in report.plan:
        monthly = "-" if choice.monthly_usd is None else f"{choice.monthly_usd.quantize(CENT)} USD/month"
        lines.append(f"planner {choice.class_name} x{choice.multiplier:g}: {choice.recommended} ({monthly})")
    for f in report.fleet:
        api = "-" if f.api_only_usd is None else f"{f.api_only_usd.quantize(CENT)}"
        lines.append(
            f"fleet x{f.multiplier:g}: {f.policy} {f.total_usd.quantize(CENT)} USD over {f.minutes} min "
            f"({f.monthly_usd.quantize(CENT)} USD/month; always-on {f.always_on_usd.quantize(CENT)}, API-only {api}; "
            f"{f.overflowed} overflowed)"
        )
    return lines


def sampling_lines(sampling: Sampling | None) -> list[str]:
    if sampling is None:
        return []
    plan, result = sampling.plan, sampling.result
    census = " (all of them: a census)" if plan.census else ""
    line = f"live sample: {len(plan.drawn)} of {plan.population} distinct prompts{census}, {plan.needed} needed"
    if plan.estimated_cost_usd is not None:
        line += f", estimated {plan.estimated_cost_usd.quantize(SAMPLE_CENTS)} USD at catalog prices"
    if result is None:
        return [line + (f"; {plan.refusal}" if plan.refusal else "; not sent")]
    return [
        line,
        f"live sample: {result.calls} calls + {result.judge_calls} judge calls, {len(result.grades)} graded, "
        f"{len(result.failed)} failed, {result.undecided} undecided, {result.not_sent} not sent (cap); "
        f"metered {result.spent_usd.quantize(SAMPLE_CENTS)} USD (tagged whatif)",
    ]


def _weak_quality(report: Report, index: int) -> float | None:
    answer = report.records[index].tiers.get(report.config.tiers.weak or "")
    return None if answer is None else answer.quality


def write_report(report: Report, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.txt", out / "decisions.jsonl"]
    paths[0].write_bytes(orjson.dumps(report_json(report), option=orjson.OPT_INDENT_2))
    paths[1].write_text(report_table(report), encoding="utf-8")
    weak = report.routing.routed_weak() if report.routing is not None else set()
    scores = {}
    if report.routing is not None:
        scores = {r.index: float(report.routing.scores[r.group]) for r in report.routing.rows}
    with paths[2].open("wb") as handle:
        for index, record in enumerate(report.records):
            cost = report.costs[index]
            row = {
                "line": record.line,
                "cache": report.cache.outcomes[index],
                "tier": "weak" if index in weak else "recorded",
                "router_score": scores.get(index),
                "recorded_cost_usd": None if cost is None else _money(cost),
                "quality": record.quality,
                "weak_quality": _weak_quality(report, index),
            }
            handle.write(orjson.dumps(row) + b"\n")
    return paths
