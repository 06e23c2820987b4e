"""The whole plan as JSON: money as exact decimal strings, every option (infeasible ones with their
reason)."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from margin.planner.costing import OptionCost
from margin.planner.evaluate import PreparedHosted
from margin.planner.ledger_input import LedgerSummary
from margin.planner.plan import ClassPlan, Plan
from margin.planner.render.featured import price_versions


def jsonable(value: object) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _capacity(h: PreparedHosted) -> dict[str, Any]:
    c, m = h.capacity, h.capacity.memory
    ref = c.reference
    return {
        "tensor_parallel": m.tensor_parallel,
        "weights_gb": m.weights_gb,
        "kv_cache_tokens": m.kv_cache_tokens,
        "concurrent_sequences": m.concurrent_sequences,
        "below_min_batch": m.below_min_batch,
        "reference": ref.ref_id if ref else None,
        "scale_factors": jsonable(ref.factors) if ref else [],
        "saturation_tok_s": c.saturation_tok_s,
        "single_stream_tok_s": c.single_stream_tok_s,
        "ttft_s": c.ttft_s,
        "required_stream_tok_s": c.required_stream_tok_s,
        "output_tok_s": c.output_tok_s,
        "binding": c.binding,
        "requests_per_s": c.requests_per_s,
        "instance_usd_hr": str(h.pricing.instance_usd_hr),
        "price_note": h.pricing.price_note,
        "replicas_per_instance": h.pricing.replicas_per_instance,
    }


def _option(cost: OptionCost) -> dict[str, Any]:
    if cost.feasible:
        return dict(jsonable(cost))
    return {"option_id": cost.option_id, "kind": cost.kind, "feasible": False, "reason": cost.reason}


def _class(cp: ClassPlan) -> dict[str, Any]:
    capacities = {h.option.id: _capacity(h) for h in cp.hosted if h.capacity.feasible}
    return {
        "name": cp.name,
        "kind": cp.kind,
        "compare_to": cp.compare_to,
        "scenarios": [
            {
                "growth": s.growth,
                "requests_per_day": s.demand.requests_per_day,
                "recommendation": jsonable(s.recommendation),
                "hybrid": jsonable(s.hybrid),
                "options": [_option(c) for c in s.costs],
            }
            for s in cp.scenarios
        ],
        "crossovers": jsonable(cp.crossovers),
        "sensitivity": jsonable(cp.sensitivity),
        "capacity": capacities,
    }


def _measured(m: LedgerSummary) -> dict[str, Any]:
    return {
        "model_group": m.model_group,
        "first_hour": m.first_hour.isoformat(),
        "last_hour": m.last_hour.isoformat(),
        "days": m.days,
        "requests": m.requests,
        "input_tokens": m.input_tokens,
        "output_tokens": m.output_tokens,
        "cache_hits": m.cache_hits,
        "spend_usd": str(m.spend.usd),
    }


def plan_document(plan: Plan) -> dict[str, Any]:
    c = plan.catalog
    return {
        "profile": plan.profile.model_dump(mode="json"),
        "ledger": None if plan.measured is None else _measured(plan.measured),
        "price_catalog": price_versions(plan),
        "classes": [_class(cp) for cp in plan.classes],
        "assumptions": {
            "assumptions": c.assumptions.model_dump(mode="json"),
            "costs": c.costs.model_dump(mode="json"),
            "hidden_costs": c.hidden_costs.model_dump(mode="json"),
            "precisions": {k: v.model_dump(mode="json") for k, v in c.precisions.items()},
        },
        "sources": {k: v.model_dump(mode="json", exclude_none=True) for k, v in c.sources.items()},
        "catalog_meta": c.meta,
    }


def render_json(plan: Plan) -> str:
    return json.dumps(plan_document(plan), indent=1) + "\n"
