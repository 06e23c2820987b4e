"""One what-if run: traffic in, the cache replay, the router projection on the misses, the volume
projection, and a Report out (rendered by margin.whatif.report)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Protocol

from margin.errors import ConfigError
from margin.planner.plan import Plan
from margin.whatif.cache_replay import CacheReplay, replay_cache
from margin.whatif.config import WhatifConfig
from margin.whatif.fleet import FleetChoice, simulate_fleet
from margin.whatif.live import SampleResult, apply_grades
from margin.whatif.pricing import Pricer
from margin.whatif.routing import RoutingProjection, group_rows, project_routing
from margin.whatif.sampling import SamplePlan, plan_sample
from margin.whatif.selfhost import PlanChoice, plan_volume
from margin.whatif.traffic import Record, Traffic
from margin.whatif.volume import VolumeRow, project_volume


class Sampler(Protocol):
    """Sends a plan's sample to the weak tier and grades the answers (margin.whatif.live.LiveSampler)."""

    def __call__(self, plan: SamplePlan, records: Sequence[Record], weak: str) -> SampleResult: ...


@dataclass
class Sampling:
    plan: SamplePlan
    result: SampleResult | None  # None: refused, or nothing to sample


@dataclass
class Report:
    config: WhatifConfig
    records: Sequence[Record]
    issues: list[str]
    costs: list[Decimal | None]  # recorded cost of each record; None: its model has no price
    cache: CacheReplay
    routing: RoutingProjection | None
    routing_note: str
    volume: list[VolumeRow]
    unknown_models: dict[str, int] = field(default_factory=dict)
    plan: list[PlanChoice] = field(default_factory=list)
    fleet: list[FleetChoice] = field(default_factory=list)
    sampling: Sampling | None = None

    def known_cost(self, outcome: str | None = None) -> Decimal:
        """The priced requests' recorded cost: all of them, or those with this cache outcome."""
        pairs = zip(self.costs, self.cache.outcomes, strict=True)
        return sum((c for c, o in pairs if c is not None and outcome in (None, o)), Decimal(0))

    @property
    def current(self) -> Decimal:
        return self.known_cost()

    @property
    def cache_saved(self) -> Decimal:
        return self.known_cost("exact") + self.known_cost("semantic")

    @property
    def routing_saved(self) -> Decimal:
        if self.routing is None:
            return Decimal(0)
        before = sum((r.strong_cost for r in self.routing.rows), Decimal(0))
        return before - self.routing.point.cost

    @property
    def all_levers(self) -> Decimal:
        return self.current - self.cache_saved - self.routing_saved


def run_whatif(traffic: Traffic, config: WhatifConfig, sampler: Sampler | None = None) -> Report:
    """`sampler`: sends the live sample when the config has `sampling:` (without one, the sample is
    planned and reported but not sent)."""
    pricer = Pricer.from_overrides(config.prices)
    records = traffic.records
    issues = [issue.message for issue in traffic.issues]
    costs = [pricer.cost(r.model, r.usage) for r in records]
    for model, count in sorted(pricer.unknown.items()):
        issues.append(f"model {model!r} is not in the price catalog: {count} requests left out of every cost")
    cache = replay_cache(records, config.cache)
    sampling = _sample(records, cache, config, pricer, sampler, issues)
    if sampling is not None and sampling.result is not None and config.tiers.weak is not None:
        records = apply_grades(records, cache.outcomes, sampling.result, config.tiers.weak)
    routing, note = _routing(records, costs, cache, config, pricer, issues)
    remaining = [r for r, o in zip(records, cache.outcomes, strict=True) if o in ("miss", "ineligible")]
    weak = routing.routed_weak() if routing is not None else set()
    volume = project_volume(records, remaining, len(weak), config.volume_multipliers)
    report = Report(config, records, issues, costs, cache, routing, note, volume, dict(pricer.unknown))
    report.sampling = sampling
    if config.planner_profile is not None:
        try:
            report.plan, built = plan_volume(config.planner_profile, volume, pricer.catalog)
        except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
            issues.append(f"planner not run on {config.planner_profile}: {exc}")
        else:
            report.fleet = _fleet(built, remaining, config, issues)
    return report


def _fleet(
    built: Plan | None, remaining: Sequence[Record], config: WhatifConfig, issues: list[str]
) -> list[FleetChoice]:
    if built is None:
        return []
    try:
        return simulate_fleet(built, remaining, config.volume_multipliers)
    except ConfigError as exc:
        issues.append(f"fleet simulator not run: {exc}")
        return []


def _sample(
    records: Sequence[Record],
    cache: CacheReplay,
    config: WhatifConfig,
    pricer: Pricer,
    sampler: Sampler | None,
    issues: list[str],
) -> Sampling | None:
    weak = config.tiers.weak
    if config.sampling is None or weak is None or not config.routing.enabled:
        return None
    plan = plan_sample(records, cache.outcomes, config, pricer)
    if plan.refusal is not None:
        issues.append(plan.refusal)
        return Sampling(plan, None)
    if not plan.drawn:
        issues.append("live sampling: no cache miss of the strong tier lacks a weak grade; nothing sent")
        return Sampling(plan, None)
    if sampler is None:
        issues.append(f"live sampling planned ({len(plan.drawn)} prompts) but not sent: no sampler given")
        return Sampling(plan, None)
    result = sampler(plan, records, weak)
    issues.extend(result.failed[:50])
    if result.not_sent:
        issues.append(f"live sampling: the cost cap was reached; {result.not_sent} sampled prompts not sent")
    if result.undecided:
        issues.append(f"live sampling: {result.undecided} answers the grader could not decide; left ungraded")
    return Sampling(plan, result)


def _routing(
    records: Sequence[Record],
    costs: Sequence[Decimal | None],
    cache: CacheReplay,
    config: WhatifConfig,
    pricer: Pricer,
    issues: list[str],
) -> tuple[RoutingProjection | None, str]:
    weak = config.tiers.weak
    if not config.routing.enabled or weak is None:
        return None, "routing lever off (no `tiers.weak` or `routing.enabled: false`)"
    if not pricer.known(weak):
        issues.append(f"weak tier {weak!r} is not in the price catalog: routing lever not projected")
        return None, f"weak tier {weak!r} has no price"
    graded: list[tuple[int, Decimal, Decimal, float]] = []
    strong = pricer.price_of(config.tiers.strong)
    for index, (record, cost) in enumerate(zip(records, costs, strict=True)):
        answer = record.tiers.get(weak)
        if cost is None or record.quality is None or not record.body:
            continue
        if record.model != config.tiers.strong and pricer.price_of(record.model) != strong:
            continue  # answered by another deployment: not the router's to move
        if answer is None or answer.quality is None:
            continue
        usage = answer.usage or record.usage
        weak_cost = pricer.cost(weak, usage)
        if weak_cost is not None:
            graded.append((index, cost, weak_cost, answer.quality))
    labelled = [g for g in graded if cache.outcomes[g[0]] in ("miss", "ineligible")]
    unlabelled = _unlabelled(records, costs, cache, config, pricer)
    if len(labelled) < config.routing.min_labelled:
        note = (
            f"routing lever not projected: {len(labelled)} cache misses carry grades for both tiers, "
            f"routing.min_labelled is {config.routing.min_labelled}"
        )
        issues.append(note)
        return None, note
    rows, groups = group_rows(records, labelled)
    note = f"fitted on {len(groups.prompts)} distinct graded prompts ({len(rows)} requests), out-of-fold scores"
    if unlabelled:
        note += f"; {len(unlabelled)} ungraded misses scored by the router and priced at the weak tier's catalog price"
    projection = project_routing(records, rows, groups, config.routing, unlabelled)
    everyone = graded + [(i, c, w, 0.0) for i, c, w in _unlabelled(records, costs, None, config, pricer)]
    return replace(projection, alone_saved=projection.alone(records, everyone)), note


def _unlabelled(
    records: Sequence[Record],
    costs: Sequence[Decimal | None],
    cache: CacheReplay | None,
    config: WhatifConfig,
    pricer: Pricer,
) -> list[tuple[int, Decimal, Decimal]]:
    """(position, strong cost, weak cost on the recorded tokens) of the strong tier's requests
    without grades of both tiers: the cache's misses only, or with `cache` None every one."""
    weak = config.tiers.weak or ""
    strong = pricer.price_of(config.tiers.strong)
    found: list[tuple[int, Decimal, Decimal]] = []
    for index, (record, cost) in enumerate(zip(records, costs, strict=True)):
        if cost is None or not record.body:
            continue
        if cache is not None and cache.outcomes[index] not in ("miss", "ineligible"):
            continue
        if record.model != config.tiers.strong and pricer.price_of(record.model) != strong:
            continue
        answer = record.tiers.get(weak)
        if record.quality is not None and answer is not None and answer.quality is not None:
            continue
        weak_cost = pricer.cost(weak, record.usage)
        if weak_cost is not None:
            found.append((index, cost, weak_cost))
    return found
