"""Stage ④: which deployments may answer, in which order, and why.

Untiered groups: the group's configured order, followed by its fallback chain: the deployments of
each group in `fallbacks`, in order (one level: a fallback group's own fallbacks are not followed,
so no chain can loop).

Tiered groups (`tiers:` + `routing:`, docs/routing.md): a `TierPolicy` (hints, rules, learned
scorer, default) picks the tier to start at; the route is that tier's deployments, then the tiers
above it up to the cap (overflow: a tier that is down, cold or full spills upward, labelled), then
the fallbacks. When a cascade runs, `escalation` lists the tiers the call stage may climb to after
checking each answer (`margin.pipeline.cascade`).

A model group under a rollout then gets its split: the request's arm (`margin.pipeline.rollout_stage`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from margin.config.model import MarginConfig, ModelGroupConfig
from margin.config.routing import CascadeConfig, RoutingConfig
from margin.errors import ConfigError, InvalidRequest, ModelNotFound, PermissionDenied, shown
from margin.pipeline.context import RequestContext
from margin.pipeline.rollout_stage import RolloutStage
from margin.pipeline.trace import stage
from margin.routing.learned.scorer import ModelFileError
from margin.routing.policies.features import CAP_KEY, PIN_KEY, RequestFeatures, features_of
from margin.routing.policies.tiers import TierPlan, TierPolicy
from margin.types import ChatRequest, Principal, RouteDecision, TierStep

AUTO_MODEL = "margin/auto"  # asks for the first tiered group, unless a group or alias claims the name


@dataclass(frozen=True, slots=True)
class ModelGroup:
    name: str
    deployments: tuple[str, ...]
    fallbacks: tuple[str, ...] = ()  # other model groups, tried in order after these deployments


class ModelTable:
    """Client-facing model names (groups, aliases and deployment names) → model groups."""

    def __init__(self, config: MarginConfig) -> None:
        self.groups: dict[str, ModelGroup] = {}
        self._by_name: dict[str, ModelGroup] = {}
        for group in config.models:
            entry = ModelGroup(group.name, tuple(group.deployments), tuple(group.fallbacks))
            self.groups[group.name] = entry
            for name in (group.name, *group.aliases):
                self._by_name[name] = entry
        tiered = next((g.name for g in config.models if g.tiers), None)
        if tiered is not None:
            self._by_name.setdefault(AUTO_MODEL, self.groups[tiered])
        for deployment in config.deployments:
            # A deployment can be asked for by its own name: useful to pin one upstream.
            self._by_name.setdefault(deployment.name, ModelGroup(deployment.name, (deployment.name,)))

    def resolve(self, model: str) -> ModelGroup:
        group = self._by_name.get(model)
        if group is None:
            raise ModelNotFound(
                f"The model {shown(model)} does not exist on this gateway. GET /v1/models lists the available models.",
                param="model",
            )
        return group

    def names(self) -> list[str]:
        return list(self.groups)

    def chain(self, group: ModelGroup) -> tuple[str, ...]:
        """The group's deployments, then its fallback groups' deployments, each once."""
        names = list(group.deployments)
        names.extend(self.fallback_deployments(group, names))
        return tuple(names)

    def fallback_deployments(self, group: ModelGroup, exclude: list[str] | tuple[str, ...] = ()) -> tuple[str, ...]:
        names: list[str] = []
        for fallback in group.fallbacks:
            names.extend(d for d in self.groups[fallback].deployments if d not in exclude and d not in names)
        return tuple(names)


def route(table: ModelTable, model: str, principal: Principal) -> RouteDecision:
    group = table.resolve(model)
    if not principal.may_use(group.name):
        raise PermissionDenied(f"This key may not use the model {shown(model)}.", param="model")
    return RouteDecision(model_group=group.name, deployments=table.chain(group), policy="static")


class TieredGroup:
    """One tiered model group: its tiers and a policy per endpoint class."""

    def __init__(self, config: ModelGroupConfig, routing: RoutingConfig, fallbacks: tuple[str, ...], data_dir: Path):
        self.name = config.name
        self.steps = tuple(TierStep(t.name, tuple(t.deployments)) for t in config.tiers)
        self.names = tuple(t.name for t in config.tiers)
        self.fallbacks = fallbacks
        self.hints = routing.hints
        self.default = TierPolicy(routing, self.names, data_dir)
        classes = routing.endpoint_classes
        self.by_class: dict[str, TierPolicy] = {str(c): TierPolicy(p, self.names, data_dir) for c, p in classes.items()}
        self.cascades: dict[str, CascadeConfig | None] = {str(c): p.cascade for c, p in classes.items()}
        self.cascade = routing.cascade

    def policy_for(self, endpoint_class: str) -> TierPolicy:
        return self.by_class.get(endpoint_class, self.default)

    def cascade_for(self, endpoint_class: str) -> CascadeConfig | None:
        return self.cascades.get(endpoint_class, self.cascade)

    def policies(self) -> list[TierPolicy]:
        return [self.default, *self.by_class.values()]

    def tier_index(self, value: str, source: str) -> int:
        """A tier named by a client: its name or its position (0 = cheapest)."""
        text = value.strip()
        if text in self.names:
            return self.names.index(text)
        if len(text) <= 3 and text.isdigit() and int(text) < len(self.names):  # int() of 5,000 digits raises
            return int(text)
        raise InvalidRequest(
            f"{source}: unknown tier {shown(value)} for {self.name!r}; tiers are {', '.join(self.names)}", param=source
        )

    def decision(self, plan: TierPlan) -> RouteDecision:
        last = plan.last if plan.cascade or plan.overflow else plan.start
        path = self.steps[plan.start : last + 1]
        names = list(dict.fromkeys(d for step in path for d in step.deployments))
        if plan.policy != "pin":
            names.extend(d for d in self.fallbacks if d not in names)
        return RouteDecision(
            model_group=self.name,
            deployments=tuple(names),
            policy=plan.policy,
            reason=plan.reason,
            tier=self.names[plan.start],
            tiers=self.steps,
            escalation=path[1:] if plan.cascade else (),
            premium=self.steps[-1].deployments[0],
        )


class Router:
    """Stage ④ for every group: static routes as before, tier policies for tiered groups."""

    def __init__(
        self,
        table: ModelTable,
        config: MarginConfig | None = None,
        data_dir: Path | None = None,
        rollouts: RolloutStage | None = None,
    ) -> None:
        self.table = table
        self.rollouts = rollouts  # applies a rollout's split to the decision (which arm answers)
        self.tiered: dict[str, TieredGroup] = {}
        for group in config.models if config is not None else ():
            if group.tiers:
                routing = group.routing or RoutingConfig()
                fallbacks = table.fallback_deployments(table.groups[group.name], tuple(group.deployments))
                self.tiered[group.name] = TieredGroup(group, routing, fallbacks, data_dir or Path("."))

    async def start(self) -> None:
        """Load every learned model file now, off the event loop, so no request pays for it."""
        for group in self.tiered.values():
            for policy in group.policies():
                if policy.learned is None:
                    continue
                try:
                    await asyncio.to_thread(policy.learned.load)
                except ModelFileError as error:  # a gateway that cannot route as configured must not start
                    raise ConfigError(f"model group {group.name!r}: {error}") from error

    @stage("route")
    def decide(self, ctx: RequestContext, request: ChatRequest) -> RouteDecision:
        decision = self._decide(ctx, request)
        return decision if self.rollouts is None else self.rollouts.apply(ctx, decision)

    def _decide(self, ctx: RequestContext, request: ChatRequest) -> RouteDecision:
        started = time.perf_counter()
        principal = ctx.principal
        decision = route(self.table, request.model, principal)
        group = self.tiered.get(decision.model_group)
        if group is None:
            return decision
        features = features_of(request, ctx.endpoint, principal)
        pin, cap = self._hints(group, features, ctx.route_hints)
        plan = group.policy_for(principal.endpoint_class).plan(features, pin=pin, cap=cap, stream=request.stream)
        elapsed = (time.perf_counter() - started) * 1000
        return dataclasses.replace(group.decision(plan), elapsed_ms=elapsed)

    def cascade_for(self, decision: RouteDecision, endpoint_class: str) -> CascadeConfig | None:
        group = self.tiered.get(decision.model_group)
        return group.cascade_for(endpoint_class) if group is not None else None

    @staticmethod
    def _hints(group: TieredGroup, features: RequestFeatures, hints: dict[str, str]) -> tuple[int | None, int | None]:
        if not group.hints:
            return None, None
        pin = hints.get("pin") or _text(features.metadata.get(PIN_KEY))
        cap = hints.get("cap") or _text(features.metadata.get(CAP_KEY))
        return (
            group.tier_index(pin, "x-margin-tier") if pin else None,
            group.tier_index(cap, "x-margin-max-tier") if cap else None,
        )


def _text(value: object) -> str | None:
    return None if value is None else str(value)
