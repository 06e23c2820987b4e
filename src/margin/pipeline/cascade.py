"""Stage ⑤ for tiered routes: label overflow, and run cascades.

A cascade tries the chosen (cheap) tier first, non-streamed, and checks its answer
(`margin.routing.policies.checks`). Accepted: the answer is returned, or replayed as SSE to a
streaming client. Rejected: the next tier is tried, and so on; the last tier's answer is sent
unchecked (streamed for real when the client streams). A tier that cannot answer at all (down,
cold, queue full, context too small) is skipped upward and labelled as overflow.

Every attempt is an `Attempt` on the context, so the rejected cheap answer is a ledger row of its
own (metered, priced, `is_final` false): the cost of escalating is visible. A verifier call is a
request of its own in the ledger (`<request id>-verify`, policy `cascade-verifier`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from margin import errors
from margin.config.routing import CascadeConfig, VerifierConfig
from margin.pipeline.call import Caller
from margin.pipeline.call_stream import CallStream
from margin.pipeline.context import RequestContext
from margin.pipeline.lifecycle import RequestLifecycle
from margin.pipeline.meter import Meter
from margin.pipeline.route import Router, route
from margin.routing.policies.checks import (
    Verdict,
    check_format,
    check_json,
    check_logprob,
    verifier_prompt,
    verifier_verdict,
)
from margin.types import AttemptStatus, ChatRequest, ChatResult, Chunk, Cost, RouteDecision, TierStep

Lifecycles = Callable[[RequestContext], RequestLifecycle]  # a request's reserve-to-record owner


class TierCaller:
    def __init__(self, router: Router, caller: Caller, meter: Meter, lifecycle: Lifecycles) -> None:
        self.router, self.caller, self.meter, self.lifecycle = router, caller, meter, lifecycle

    async def chat(self, ctx: RequestContext, request: ChatRequest) -> ChatResult:
        decision, cascade = self._cascade_of(ctx)
        if decision is None or cascade is None:
            result = await self.caller.chat(ctx, request)
            label(ctx)
            return result
        try:
            accepted = await self._climb(ctx, request, decision, cascade)
            result = accepted if accepted is not None else await self.caller.chat(ctx, request)
        finally:
            ctx.decision = decision
        label(ctx)
        return _without_probe_fields(result, request)

    async def open_stream(self, ctx: RequestContext, request: ChatRequest) -> tuple[Chunk, CallStream]:
        decision, cascade = self._cascade_of(ctx)
        if decision is None or cascade is None:
            opened = await self.caller.open_stream(ctx, request)
            label(ctx)
            return opened
        try:
            accepted = await self._climb(ctx, request, decision, cascade)
            if accepted is None:
                opened = await self.caller.open_stream(ctx, request)
            else:
                opened = self._replay(ctx, request, _without_probe_fields(accepted, request))
        finally:
            ctx.decision = decision
        label(ctx)
        return opened

    # --- the cascade --------------------------------------------------------------------------------

    def _cascade_of(self, ctx: RequestContext) -> tuple[RouteDecision | None, CascadeConfig | None]:
        decision = ctx.decision
        if decision is None or not decision.escalation:
            return decision, None
        return decision, self.router.cascade_for(decision, ctx.principal.endpoint_class)

    async def _climb(
        self, ctx: RequestContext, request: ChatRequest, decision: RouteDecision, cascade: CascadeConfig
    ) -> ChatResult | None:
        """Try every tier but the last, checking answers: the accepted answer, or None with
        `ctx.decision` narrowed to the last tier, which the caller then calls as the client asked."""
        steps = cascade_steps(decision)
        probe = self._probe(request, cascade, steps[:-1])
        outcome = ctx.route_outcome
        outcome.cascade = "accepted"
        for step in steps[:-1]:
            if not step.deployments:
                continue
            ctx.decision = dataclasses.replace(decision, deployments=step.deployments)
            try:
                result = await self.caller.chat(ctx, probe)
            except errors.MarginError as error:
                if not (error.failover or isinstance(error, errors.ServiceUnavailable)):
                    raise
                outcome.overflow_from = outcome.overflow_from or step.name
                continue
            ctx.attempts[-1].usage = self.meter.usage_of(ctx, probe, result.usage, result.body)
            verdict = await self._check(ctx, request, result, cascade)
            outcome.check = verdict.detail
            if verdict.ok:
                return result
            outcome.cascade, outcome.escalations = "escalated", outcome.escalations + 1
        ctx.decision = dataclasses.replace(decision, deployments=steps[-1].deployments)
        return None

    def _probe(self, request: ChatRequest, cascade: CascadeConfig, steps: Sequence[TierStep]) -> ChatRequest:
        """The request as the checked tiers get it: never streamed; with logprobs when the logprob
        check needs them and every checked deployment can return them."""
        params = request.params
        wants = "logprob" in cascade.checks and request.kind == "chat" and not params.get("logprobs")
        providers = self.caller.providers
        if wants and all(providers[d].deployment.capabilities.logprobs for s in steps for d in s.deployments):
            params = {**params, "logprobs": True}
        return dataclasses.replace(request, stream=False, include_usage=False, params=params)

    async def _check(
        self, ctx: RequestContext, request: ChatRequest, result: ChatResult, cascade: CascadeConfig
    ) -> Verdict:
        details: list[str] = []
        for name in cascade.checks:
            if name == "format":
                verdict = check_format(result.body)
            elif name == "json":
                verdict = check_json(result.body, request)
            elif name == "logprob":
                verdict = check_logprob(
                    result.body, cascade.min_mean_logprob, missing_ok=cascade.missing_logprobs == "accept"
                )
            else:
                assert cascade.verifier is not None  # the config requires one for this check
                verdict = await self._verify(ctx, request, result, cascade.verifier)
            if not verdict.ok:
                return verdict
            details.append(verdict.detail)
        return Verdict(True, ",".join(details))

    async def _verify(
        self, ctx: RequestContext, request: ChatRequest, result: ChatResult, config: VerifierConfig
    ) -> Verdict:
        question = ChatRequest(
            model=config.model,
            messages=[{"role": "user", "content": verifier_prompt(config.prompt, request, result.body)}],
            params={"max_tokens": config.max_tokens, "temperature": 0},
        )
        child = RequestContext(request_id=f"{ctx.request_id}-verify", endpoint=ctx.endpoint, principal=ctx.principal)
        try:
            async with self.lifecycle(child) as life:  # a request of its own: metered and recorded once
                life.counterfactual = Cost()  # all-premium traffic needs no verifier: its whole cost is overhead
                child.decision = dataclasses.replace(
                    route(self.router.table, config.model, ctx.principal), policy="cascade-verifier"
                )
                reply = await self.caller.chat(child, question)
                life.usage = self.meter.usage_of(child, question, reply.usage, reply.body)
        except errors.MarginError as error:
            return Verdict(False, f"verifier=error:{type(error).__name__}")
        finally:
            ctx.upstream_seconds += child.upstream_time()  # the verifier's wait is not the gateway's overhead
        return verifier_verdict(reply.body, config.accept)

    def _replay(self, ctx: RequestContext, request: ChatRequest, result: ChatResult) -> tuple[Chunk, CallStream]:
        """The accepted answer as the stream the client asked for, through the usual stream machinery."""
        from margin.caching.replay import replay_chunks  # the cache's replay: same chunk shapes

        attempt = ctx.attempts[-1]
        # Always carry the usage chunk: the stream meter keeps the reported usage and strips the
        # chunk when the client did not ask for it.
        chunks = list(replay_chunks(result.body, attempt.usage, dataclasses.replace(request, include_usage=True)))
        return chunks[0], ReplayStream(request, attempt.index, chunks[1:])


def cascade_steps(decision: RouteDecision) -> list[TierStep]:
    """The cascade's tiers with the deployments the route still allows (stage ② may have narrowed
    it); the last step also gets whatever else the route holds (fallback groups)."""
    allowed = decision.deployments
    first = next(t for t in decision.tiers if t.name == decision.tier)
    steps = [first, *decision.escalation]
    used: set[str] = set()
    out: list[TierStep] = []
    for step in steps[:-1]:
        names = tuple(d for d in step.deployments if d in allowed and d not in used)
        used.update(names)
        out.append(TierStep(step.name, names))
    out.append(TierStep(steps[-1].name, tuple(d for d in allowed if d not in used)))
    return out


def label(ctx: RequestContext) -> None:
    """Which tier answered; an answer from another tier than the one chosen (without a cascade
    escalation) is overflow."""
    decision, outcome = ctx.decision, ctx.route_outcome
    if decision is None or decision.tier is None:
        return
    outcome.answered_tier = decision.tier_of(ctx.deployment)
    moved = outcome.answered_tier is not None and outcome.answered_tier != decision.tier
    if moved and outcome.cascade is None:
        outcome.overflow_from = outcome.overflow_from or decision.tier


def _without_probe_fields(result: ChatResult, request: ChatRequest) -> ChatResult:
    """Logprobs margin asked for on the client's behalf are not the client's."""
    if request.params.get("logprobs"):
        return result
    for choice in result.body.get("choices") or ():
        if isinstance(choice, dict) and choice.get("logprobs") is not None:
            choice["logprobs"] = None
    return result


class ReplayStream(CallStream):
    """The rest of an answer already in hand, in the shape the handler reads a live stream.

    Its attempt ended when the non-streamed call returned, so there is nothing to recover or close:
    it shares only the interface (`source`, `request`, iteration, `close`) and none of the
    failover state, hence no `super().__init__`."""

    def __init__(self, request: ChatRequest, source: int, chunks: Sequence[Chunk]) -> None:
        self.request = self.original = request
        self.source = source
        self.attempt = None
        self.switched = False  # the accepted answer is replayed whole: no other deployment took over
        self._rest = iter(chunks)

    def __aiter__(self) -> ReplayStream:
        return self

    async def __anext__(self) -> Chunk:
        try:
            return next(self._rest)
        except StopIteration:
            raise StopAsyncIteration from None

    async def close(self, status: AttemptStatus) -> None:
        self._rest = iter(())
