"""Which options a human-facing report shows: the comparison API, the cheapest APIs, and the best
configuration
of each model per hosting kind (the full list is in JSON/CSV)."""

from __future__ import annotations

from margin.planner.costing import OptionCost
from margin.planner.crossover import Crossover
from margin.planner.plan import ClassPlan, Plan, ScenarioResult

CHEAPEST_APIS = 3


def featured_ids(cp: ClassPlan) -> list[str]:
    first = cp.scenarios[0]
    feasible = sorted((c for c in first.costs if c.feasible), key=lambda c: c.total)
    ids: list[str] = []
    if cp.compare_to is not None:
        ids.append(f"api:{cp.compare_to}")
    ids += [c.option_id for c in feasible if c.kind == "api"][:CHEAPEST_APIS]
    best: dict[tuple[str, str], str] = {}
    hosted = {h.option.id: h.option.model_id for h in cp.hosted}
    for cost in feasible:
        if cost.kind != "api":
            best.setdefault((cost.kind, hosted[cost.option_id]), cost.option_id)
    ids += sorted(best.values(), key=lambda i: _total(first, i))
    return list(dict.fromkeys(ids))


def _total(scenario: ScenarioResult, option_id: str) -> float:
    return float(cost_of(scenario, option_id).total)


def cost_of(scenario: ScenarioResult, option_id: str) -> OptionCost:
    return next(c for c in scenario.costs if c.option_id == option_id)


def crossover_text(crossover: Crossover | None) -> str:
    if crossover is None:
        return "-"
    if crossover.requests_per_day is None:
        return crossover.reason
    return f"{crossover.requests_per_day:,.0f} req/day ({crossover.growth_multiple:.2f}x today)"


def infeasible_summary(scenario: ScenarioResult, limit: int = 5) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for cost in scenario.costs:
        if not cost.feasible:
            key = cost.reason.split(":")[0] if "infeasible at any" in cost.reason else cost.reason
            counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:limit]


def provenance_lines(plan: Plan) -> list[str]:
    """Where the plan's inputs came from: the ledger totals (with --from-ledger) and the API price catalog."""
    lines = []
    m = plan.measured
    if m is not None:
        group = f" (model group {m.model_group})" if m.model_group else ""
        lines.append(
            f"Measured from the ledger{group}: {m.requests:,} requests over {m.days * 24:,.0f} h "
            f"({m.first_hour:%Y-%m-%d %H:00} to {m.last_hour:%Y-%m-%d %H:00} UTC), {m.input_tokens:,} input and "
            f"{m.output_tokens:,} output tokens, {m.cache_hits:,} cache hits, spend {m.spend}"
        )
    versions = price_versions(plan)
    lines.append(f"API prices: metering price catalog {', '.join(versions) or '(none used)'}")
    return lines


def price_versions(plan: Plan) -> list[str]:
    return sorted({api.price_version for api in plan.catalog.apis.values() if api.price_version})
