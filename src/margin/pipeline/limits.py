"""Stage ②: budgets and rate limits, between route and call. The one choke point every model-serving
endpoint passes (tests/unit/budgets/test_choke_point.py enumerates the route table to prove it).

`admit` narrows the route to the key's allowed cost ranks, works out the worst case the request may use
on any deployment the route may try, and reserves it on every limit that applies, atomically; a
refusal (402/429) is raised here, before any upstream call. `settle` runs wherever the meter
settles (success, error, end of stream, client gone): it releases the holds and records the actual
cost and tokens, in the background so the response never waits on the counter store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from margin.budgets.admission import Limiter, Ticket
from margin.budgets.estimate import Demand, WorstRates, demand_of, largest_fitting, max_output_tokens, nano_ceil
from margin.budgets.live import LiveObjects
from margin.budgets.refusals import BudgetRefusal
from margin.budgets.rules import Rule, key_rules
from margin.config.model import DeploymentConfig
from margin.errors import PermissionDenied
from margin.identity.service import KeyService
from margin.metering.pricebook import PriceBook
from margin.pipeline.context import RequestContext
from margin.pipeline.durable import DurableIntents
from margin.pipeline.meter import Meter
from margin.pipeline.trace import stage
from margin.types import ChatRequest, EmbeddingRequest, RouteDecision


class Limits:
    def __init__(
        self,
        limiter: Limiter | None = None,
        *,
        meter: Meter | None = None,
        prices: PriceBook | None = None,
        deployments: Mapping[str, DeploymentConfig] | None = None,
        keys: KeyService | None = None,
        zone: ZoneInfo | None = None,
        default_max_output_tokens: int = 4096,
        durable: DurableIntents | None = None,
    ) -> None:
        self.limiter = limiter
        self.durable = durable or DurableIntents(None, None)
        self.meter = meter
        self.rates = WorstRates(prices) if prices is not None else None
        self.deployments = dict(deployments or {})
        self.keys = keys
        self.zone = zone or ZoneInfo("UTC")
        self.default_max_output_tokens = default_max_output_tokens
        self._key_rules: dict[str, tuple[object, tuple[Rule, ...]]] = {}
        self.objects: LiveObjects | None = None  # teams, budgets and rate limits kept live (docs/teams.md)

    @stage("limits")
    async def admit(self, ctx: RequestContext, request: ChatRequest | EmbeddingRequest) -> None:
        self._restrict_cost_ranks(ctx)
        limiter = self.limiter
        if limiter is None or ctx.decision is None:
            return
        deployments = ctx.decision.deployments
        applied = limiter.applicable(ctx.principal, deployments[0] if deployments else None, self._rules_of(ctx))
        if not applied:
            return  # nothing limits this request: no store round trip at all
        counted = ctx.prompt_counts  # counted ahead, off the loop; the rest once here, kept for a refusal
        prompts = dict(counted.tokens) if counted is not None and counted.request is request else {}
        demand = self.cascade_demand(request, ctx.decision, prompts)
        note = self.durable.note(ctx)
        try:
            ticket = await limiter.reserve(ctx.principal, applied, demand, note)
        except BudgetRefusal as refusal:
            raise self._explained(refusal, request, ctx.decision, demand, prompts) from None
        ctx.reservation = ticket
        self.durable.reserved(ctx, ticket, note, demand)

    def settle(self, ctx: RequestContext) -> None:
        """Idempotent: the first call settles, later ones find nothing to do."""
        ticket, ctx.reservation = ctx.reservation, None
        if not isinstance(ticket, Ticket) or self.limiter is None:
            return
        cost = nano_ceil(ctx.cost.total.usd) if ctx.cost is not None else 0
        tokens = sum(a.usage.total for a in ctx.attempts if a.usage is not None)
        self.limiter.settle(ticket, cost_nano=cost, tokens=tokens)

    # --- helpers ----------------------------------------------------------------------------------

    def _explained(
        self,
        refusal: BudgetRefusal,
        request: ChatRequest | EmbeddingRequest,
        decision: RouteDecision,
        demand: Demand,
        prompts: dict[str, int],
    ) -> BudgetRefusal:
        """The refusal, naming what this request tried to reserve and the largest max_tokens that
        would have fitted in what is left (refusal path only: a few demand computations, each with
        the prompt sizes admission counted: only max_tokens changes between them)."""
        shortfall = refusal.shortfall
        kind = shortfall.applied.rule.kind
        requested = demand.cost_nano if kind == "usd" else demand.tokens
        fits = None
        if isinstance(request, ChatRequest) and shortfall.room > 0:

            def needs(max_tokens: int) -> int:
                params = {k: v for k, v in request.params.items() if k != "max_completion_tokens"}
                trial = dataclasses.replace(request, params={**params, "max_tokens": max_tokens})
                found = self.cascade_demand(trial, decision, prompts)
                return found.cost_nano if kind == "usd" else found.tokens

            upper = request.max_output_tokens or self.default_max_output_tokens
            fits = largest_fitting(needs, shortfall.room, upper - 1)
        return refusal.explained(requested, fits)

    def _restrict_cost_ranks(self, ctx: RequestContext) -> None:
        ranks = ctx.principal.allowed_cost_ranks
        decision = ctx.decision
        if not ranks or decision is None:
            return
        allowed = tuple(d for d in decision.deployments if self._cost_rank(d) in ranks)
        if not allowed:
            raise PermissionDenied(
                f"This key may not use the cost ranks serving {decision.model_group!r}.", param="model"
            )
        if allowed != decision.deployments:
            ctx.decision = dataclasses.replace(decision, deployments=allowed)

    def _cost_rank(self, deployment: str) -> int | None:
        config = self.deployments.get(deployment)
        return config.cost_rank if config is not None else None

    def _rules_of(self, ctx: RequestContext) -> tuple[Rule, ...]:
        if self.keys is None:
            return ()
        key_id = ctx.principal.key_id
        policy = self.keys.policy_of(key_id)
        if policy is None:
            return ()
        cached = self._key_rules.get(key_id)
        if cached is None or cached[0] is not policy:
            cached = (policy, key_rules(key_id, policy, self.zone))
            self._key_rules[key_id] = cached
        return cached[1]

    def cascade_demand(
        self, request: ChatRequest | EmbeddingRequest, decision: RouteDecision, prompts: dict[str, int] | None = None
    ) -> Demand:
        """The worst case of the whole route. A cascade may pay for an answer on every tier it climbs
        through, so each escalation step adds its own worst case (conservative: the settle returns
        what was not spent). `prompts` remembers prompt sizes per deployment across calls."""
        demand = self.demand(request, decision.deployments, prompts)
        for step in decision.escalation:
            extra = self.demand(request, step.deployments, prompts)
            demand = Demand(cost_nano=demand.cost_nano + extra.cost_nano, tokens=demand.tokens + extra.tokens)
        return demand

    def demand(
        self,
        request: ChatRequest | EmbeddingRequest,
        deployments: tuple[str, ...],
        prompts: dict[str, int] | None = None,
    ) -> Demand:
        assert self.meter is not None and self.rates is not None
        meter, rates = self.meter, self.rates
        if isinstance(request, EmbeddingRequest):

            def prompt(name: str) -> int:
                if prompts is not None and name in prompts:
                    return prompts[name]
                count = meter.counter_for(name)
                return sum(len(i) if isinstance(i, list) else count(i) for i in request.inputs)

            return demand_of(rates, deployments, prompt_tokens=prompt, output_tokens=lambda _n, _p: 0)

        def chat_prompt(name: str) -> int:
            if prompts is None:
                return meter.estimate_prompt(request, meter.counter_for(name))
            if name not in prompts:
                prompts[name] = meter.estimate_prompt(request, meter.counter_for(name))
            return prompts[name]

        def output(name: str, prompt: int) -> int:
            config = self.deployments.get(name)
            window = config.context_window if config is not None else None
            return max_output_tokens(
                request.max_output_tokens, request.n, self.default_max_output_tokens, window, prompt
            )

        return demand_of(rates, deployments, prompt_tokens=chat_prompt, output_tokens=output)
