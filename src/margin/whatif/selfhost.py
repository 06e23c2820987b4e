"""Self-hosting: the planner run on the volume and token mix left after the levers.

With `planner_profile` in the candidate config, the profile's measured fields are replaced as
`margin plan --from-ledger` replaces them (requests per day, token means with the profile's
p95/mean ratios) and its growth scenarios become the volume multipliers; the planner then prices
API, self-hosted, managed and hybrid options for each class at each multiplier.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from margin.metering.catalog import PriceCatalog
from margin.planner.catalog import load_catalog
from margin.planner.plan import Plan, plan
from margin.planner.profile import Profile, load_profile
from margin.whatif.volume import VolumeRow


@dataclass(frozen=True)
class PlanChoice:
    class_name: str
    multiplier: float
    recommended: str
    monthly_usd: Decimal | None


def plan_volume(
    profile_path: Path, volume: list[VolumeRow], prices: PriceCatalog
) -> tuple[list[PlanChoice], Plan | None]:
    """The planner's recommendation per class and multiplier, and the plan (for the fleet simulator)."""
    if not volume:
        return [], None
    base = load_profile(profile_path)
    row = volume[0]  # the multipliers become the planner's growth scenarios
    data: dict[str, Any] = base.model_dump()
    data.update(
        requests_per_day=max(row.upstream_per_day, 1e-9),
        input_tokens=_tokens(row.input_tokens_mean, base.input_tokens.p95 / base.input_tokens.mean),
        output_tokens=_tokens(row.output_tokens_mean, base.output_tokens.p95 / base.output_tokens.mean),
        growth=tuple(v.multiplier for v in volume),
    )
    built = plan(Profile.model_validate(data), load_catalog(prices=prices))
    choices = [
        PlanChoice(c.name, s.growth, s.recommendation.label, s.recommendation.monthly)
        for c in built.classes
        for s in c.scenarios
    ]
    return choices, built


def _tokens(mean: float, ratio: float) -> dict[str, float]:
    mean = max(mean, 1.0)
    return {"mean": mean, "p95": mean * ratio}
