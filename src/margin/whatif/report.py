"""The what-if report as JSON, a text table and per-request decisions (JSONL), money as exact
Decimal strings (USD)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from margin.whatif.routing import CurvePoint
from margin.whatif.run import Report

CENT = Decimal("0.01")
NOT_BUILT = (
    "live sampling of cheaper tiers through margin (tagged `whatif`, cost cap) is not built: "
    "the routing lever needs grades of both tiers in the traffic file (`quality` and `tiers`)"
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


def report_json(report: Report) -> dict[str, Any]:
    cache = report.cache
    routing: dict[str, Any] = {"status": report.routing_note}
    if report.routing is not None:
        projection = report.routing
        routing |= {
            "requests": len(projection.rows),
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
    for choice in report.plan:
        monthly = "-" if choice.monthly_usd is None else f"{choice.monthly_usd.quantize(CENT)} USD/month"
        lines.append(f"planner {choice.class_name} x{choice.multiplier:g}: {choice.recommended} ({monthly})")
    lines.append("")
    lines.append(f"routing: {report.routing_note}")
    lines += [f"issue: {issue}" for issue in report.issues[:20]]
    if len(report.issues) > 20:
        lines.append(f"... {len(report.issues) - 20} more issues in report.json")
    return "\n".join(lines) + "\n"


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
            }
            handle.write(orjson.dumps(row) + b"\n")
    return paths
