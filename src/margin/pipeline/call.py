"""Stage ⑤: call the upstream, retrying and failing over along the route when a deployment misbehaves.

For each deployment of the route, in order: skip it when the request cannot fit its context window,
when its circuit is open or when it is over its attempts-per-second; otherwise call it, and on an
error let the model group's policy decide: retry it (backoff with jitter, Retry-After honoured up to
a cap, within the request's retry budget), fail over to the next deployment, or return the error.
The request's deadline bounds all of it.

Every try is an `Attempt` on the context, so a failed try is recorded against the deployment that
failed, never billed as part of the answer that finally succeeded. Streams continue in
`margin.pipeline.call_stream` once their first chunk is in hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from margin import errors
from margin.autoscale.standby import Standby
from margin.config.model import Timeouts
from margin.pipeline import legacy
from margin.pipeline.call_run import Run
from margin.pipeline.call_stream import CallStream, prompt_estimate
from margin.pipeline.context import RequestContext
from margin.pipeline.meter import TokenCounter, estimate_text_tokens
from margin.providers import timing
from margin.providers.base import Provider
from margin.resilience.backoff import in_place_wait
from margin.resilience.chain import Chain
from margin.resilience.circuit import Admission, Outcome
from margin.resilience.deadline import Deadline, RetryBudget, deadline_error
from margin.resilience.error_actions import TRIPS_CIRCUIT, error_class
from margin.resilience.idle_watch import IdleWatch, WentIdle
from margin.resilience.state import Resilience
from margin.types import Attempt, ChatRequest, ChatResult, Chunk, EmbeddingRequest, EmbeddingResult

T = TypeVar("T")
Call = Callable[[str], Coroutine[Any, Any, T]]  # deployment name -> its answer


class _NextDeployment(Exception):
    """Control flow: this deployment is done with; try the next. Never escapes this module."""

    def __init__(self, error: errors.MarginError) -> None:
        self.error = error


class Caller:
    def __init__(
        self, providers: Mapping[str, Provider], cost_ranks: Mapping[str, int], resilience: Resilience | None = None
    ) -> None:
        self.providers = providers
        self.cost_ranks = cost_ranks  # deployment -> its cost_rank, for the ledger and headers
        self.resilience = resilience or Resilience.for_deployments(p.deployment for p in providers.values())
        # Requests in flight per deployment: a self-hosted GPU's time is shared by them.
        self.in_flight: dict[str, int] = dict.fromkeys(providers, 0)
        # Requests that found no healthy endpoint (circuit open, connection refused): the demand that
        # wakes a deployment scaled to zero (margin.autoscale).
        self.unserved: dict[str, int] = dict.fromkeys(providers, 0)
        # Streams read to the end after their client left (on_disconnect: drain); cancelled on shutdown.
        self.background: set[asyncio.Task[None]] = set()
        # Awaited between an attempt's creation and its upstream call: makes the attempt durable
        # (margin.pipeline.durable) so a replica that dies mid-call still leaves its ledger row.
        self.on_attempt: Callable[[RequestContext, Attempt], Awaitable[None]] | None = None
        # Scaled-to-zero and drained deployments (scale_to_zero:, /admin/deployments/{name}/drain).
        self.standby: Standby | None = None

    # --- attempts -------------------------------------------------------------------------------

    def _begin(self, ctx: RequestContext, name: str) -> Attempt:
        provider = self.providers[name]
        attempt = Attempt(
            request_id=ctx.request_id,
            index=len(ctx.attempts),
            deployment=name,
            model=provider.deployment.model,
            cost_rank=self.cost_ranks.get(name),
            started_at=time.perf_counter(),
        )
        ctx.attempts.append(attempt)
        timing.track(attempt.upstream)  # the adapter marks when its upstream's part starts and ends
        if ctx.trace is not None:  # the upstream's span becomes a child of this attempt's
            attempt.upstream.trace_headers = ctx.trace.upstream_headers(attempt.index)
        self.in_flight[name] += 1
        attempt.gpu_seconds = float(self.in_flight[name])  # sharers at start; turned into seconds at the end
        return attempt

    def end(self, ctx: RequestContext, attempt: Attempt) -> None:
        self.in_flight[attempt.deployment] -= 1
        attempt.latency_ms = (time.perf_counter() - attempt.started_at) * 1000
        attempt.gpu_seconds = attempt.latency_ms / 1000 / max(1.0, attempt.gpu_seconds)

    def fail(self, ctx: RequestContext, attempt: Attempt, error: errors.MarginError) -> None:
        attempt.status = "error"
        attempt.error_class = type(error).__name__
        if isinstance(error, errors.UpstreamConnection):
            self.unserved[attempt.deployment] += 1
            if self.standby is not None:
                self.standby.unreachable(attempt.deployment)
        self.end(ctx, attempt)

    def _succeed(self, ctx: RequestContext, run: Run, attempt: Attempt, model: str) -> None:
        attempt.model = model
        name = attempt.deployment
        ctx.deployment, ctx.model, ctx.cost_rank = name, model, self.cost_ranks.get(name)
        if self.standby is not None:
            self.standby.answered(name)
        if run.route and name != run.route[0]:
            # A degraded answer says so: which deployment it replaces, why, and whether it is another model.
            ctx.extra_headers["x-margin-fallback"] = "true"
            ctx.extra_headers["x-margin-fallback-from"] = run.route[0]
            if run.first_failure:
                ctx.extra_headers["x-margin-fallback-reason"] = run.first_failure
            if not self.resilience.is_own(run.group, name):
                ctx.extra_headers["x-margin-degraded"] = "true"

    # --- the failover loop ----------------------------------------------------------------------

    def plan(self, ctx: RequestContext, request: ChatRequest | None) -> Run:
        assert ctx.decision is not None
        res = self.resilience
        tokens = 0
        if request is not None:
            first = ctx.decision.deployments[0]
            counted = ctx.counted_prompt(request, first)  # ahead, off the loop (Meter.count_ahead)
            tokens = counted if counted is not None else prompt_estimate(request, self.counter(first))
        return Run(
            deadline=Deadline.after(res.failover.deadline, res.clock),
            budget=RetryBudget(res.failover.retry_budget),
            chain=Chain(res.limits, tokens),
            policy=res.policy(ctx.decision.model_group),
            group=ctx.decision.model_group,
            route=ctx.decision.deployments,
        )

    async def failover(self, ctx: RequestContext, run: Run, names: tuple[str, ...], call: Call[T]) -> tuple[Attempt, T]:
        """The first answer along `names`; raises the error to return to the client."""
        last: errors.MarginError | None = None
        for name in names:
            if not run.chain.fits(name):
                run.skipped.append(f"{name}: context window too small")
                run.first_failure = run.first_failure or "context_length"
                continue
            if await self._away(ctx, run, name):
                continue
            admission = await self._admit(run, name)
            if admission is None:
                continue
            try:
                return await self._on_deployment(ctx, run, name, admission, call)
            except _NextDeployment as step:
                last = step.error
        raise self._exhausted(run, last)

    async def _away(self, ctx: RequestContext, run: Run, name: str) -> bool:
        """Whether `name` is drained, or cold past this request's wait (margin.autoscale.standby)."""
        if self.standby is None:
            return False
        why = await self.standby.admit(name, ctx.principal.endpoint_class)
        if why is None:
            return False
        if why == "cold":
            self.unserved[name] += 1  # the demand that wakes it
        run.skipped.append(f"{name}: {why}")
        run.first_failure = run.first_failure or why
        return True

    async def _admit(self, run: Run, name: str) -> Admission | None:
        limits = self.resilience.limits[name]
        admission = await self.resilience.circuits.admit(name, limits.circuit)
        why = None
        if admission is Admission.REJECT:
            why = "circuit_open"
            self.unserved[name] += 1
        elif not self.resilience.limiter.try_acquire(name):
            why = "attempt_rate"
            if admission is Admission.PROBE:
                await self.resilience.circuits.record(name, limits.circuit, "neutral", probe=True)
        if why is None:
            return admission
        run.skipped.append(f"{name}: {why.replace('_', ' ')}")
        run.first_failure = run.first_failure or why
        return None

    async def _on_deployment(
        self, ctx: RequestContext, run: Run, name: str, admission: Admission, call: Call[T]
    ) -> tuple[Attempt, T]:
        retries = 0
        while True:
            attempt = self._begin(ctx, name)
            try:
                if self.on_attempt is not None:
                    await self.on_attempt(ctx, attempt)
                value = await self._bounded(run, name, call(name))
            except errors.MarginError as error:
                self.fail(ctx, attempt, error)
                await self.judge(name, error, probe=admission is Admission.PROBE)
                delay = self._next_step(run, name, error, retries, admission)
                again = await self._readmit(name, wait=delay)
                if again is None:
                    raise _NextDeployment(error) from None
                admission = again
                retries += 1
                continue
            except asyncio.CancelledError:
                attempt.status = "cancelled"
                self.end(ctx, attempt)
                await self._record(name, "neutral", probe=admission is Admission.PROBE)
                raise
            await self._record(name, "success", probe=admission is Admission.PROBE)
            return attempt, value

    async def _readmit(self, name: str, *, wait: float) -> Admission | None:
        """Admission for an in-place retry after `wait` seconds, or None to fail over instead.

        The failure just judged may have opened the circuit: then the retry stops at once, without
        waiting. A circuit opened by another request during the wait stops it too; so does an
        attempt rate already spent."""
        policy = self.resilience.limits[name].circuit
        admission = await self.resilience.circuits.admit(name, policy)
        if admission is Admission.REJECT:
            return None
        await asyncio.sleep(wait)
        if admission is Admission.ALLOW:
            admission = await self.resilience.circuits.admit(name, policy)
            if admission is Admission.REJECT:
                return None
        if not self.resilience.limiter.try_acquire(name):
            if admission is Admission.PROBE:
                await self.resilience.circuits.record(name, policy, "neutral", probe=True)
            return None
        return admission

    def _next_step(self, run: Run, name: str, error: errors.MarginError, retries: int, admission: Admission) -> float:
        """Seconds to wait before retrying `name`; raises to fail over or to return the error."""
        kind = error_class(error)
        run.first_failure = run.first_failure or kind
        action = run.policy.action(error)
        if action == "return" or run.deadline.expired:
            raise error
        if kind == "context_length":
            run.chain.context_exceeded(name)
        wait = in_place_wait(
            error,
            action,
            self.resilience.limits[name].retry,
            retries=retries,
            alternatives=self._alternatives(run, name),
            probe=admission is Admission.PROBE,
            remaining=run.deadline.remaining(),
            rand=self.resilience.rand,
        )
        if wait is None or not run.budget.take():
            raise _NextDeployment(error)
        return wait

    def _alternatives(self, run: Run, name: str) -> bool:
        """Is there a deployment after `name` on the route that the request could still use?"""
        later = run.route[run.route.index(name) + 1 :] if name in run.route else ()
        return any(run.chain.fits(n) for n in later)

    async def _bounded(self, run: Run, name: str, work: Coroutine[Any, Any, T]) -> T:
        try:
            async with asyncio.timeout(run.deadline.remaining()):
                return await work
        except TimeoutError:
            raise deadline_error(name, self.resilience.failover.deadline) from None

    async def judge(self, name: str, error: errors.MarginError, *, probe: bool) -> None:
        """Tell the deployment's circuit: a sick upstream counts; a refused request proves it alive;
        the request's own deadline running out says nothing either way (the deployment's timeouts do)."""
        kind = error_class(error)
        outcome: Outcome = "failure" if kind in TRIPS_CIRCUIT else "success"
        if error.error_code == "deadline_exceeded":
            outcome = "neutral"
        await self._record(name, outcome, probe=probe, error=kind)

    async def _record(self, name: str, outcome: Outcome, *, probe: bool, error: str | None = None) -> None:
        policy = self.resilience.limits[name].circuit
        await self.resilience.circuits.record(name, policy, outcome, probe=probe, error=error)

    def _exhausted(self, run: Run, last: errors.MarginError | None) -> errors.MarginError:
        if last is not None:
            return last
        if any("context window" in s for s in run.skipped) and len(run.skipped) == len(run.route):
            return errors.ContextLengthExceeded(
                f"The prompt (about {run.chain.prompt_tokens} tokens) does not fit the context window of any "
                f"deployment of {run.group!r}.",
                param="messages",
            )
        if not run.skipped:
            return errors.ServiceUnavailable("No deployment is configured for this model.")
        cooldown = min(self.resilience.limits[n].circuit.cooldown for n in run.route)
        return errors.ServiceUnavailable(
            f"Every deployment of {run.group!r} is unavailable right now ({'; '.join(run.skipped)}).",
            headers={"retry-after": str(max(1, math.ceil(cooldown)))},
        )

    # --- the three kinds of call ----------------------------------------------------------------

    async def chat(self, ctx: RequestContext, request: ChatRequest) -> ChatResult:
        run = self.plan(ctx, request)

        async def call(name: str) -> ChatResult:
            provider = self.providers[name]
            if request.kind == "completion" and not provider.native_completions:
                return legacy.completion_result(await provider.chat(legacy.as_chat(request)))
            return await provider.chat(request)

        attempt, result = await self.failover(ctx, run, run.route, call)
        self.end(ctx, attempt)
        attempt.usage = result.usage
        self._succeed(ctx, run, attempt, result.model)
        return result

    async def embed(self, ctx: RequestContext, request: EmbeddingRequest) -> EmbeddingResult:
        run = self.plan(ctx, None)

        async def call(name: str) -> EmbeddingResult:
            return await self.providers[name].embed(request)

        attempt, result = await self.failover(ctx, run, run.route, call)
        self.end(ctx, attempt)
        attempt.usage = result.usage
        self._succeed(ctx, run, attempt, result.model)
        return result

    async def open_stream(self, ctx: RequestContext, request: ChatRequest) -> tuple[Chunk, CallStream]:
        """The first chunk and the rest: failures before the first chunk fail over invisibly."""
        run = self.plan(ctx, request)
        first, attempt, upstream = await self.open_on(ctx, run, run.route, request)
        stream = CallStream(self, ctx, run, request, attempt, upstream, first, drain=self.drains)
        return await stream.first_to_send(first), stream  # a group's stream buffer may hold `first` back

    async def open_on(
        self, ctx: RequestContext, run: Run, names: tuple[str, ...], request: ChatRequest
    ) -> tuple[Chunk, Attempt, AsyncIterator[Chunk]]:
        """Open a stream on the first of `names` that sends a first chunk (used again mid-stream)."""

        async def call(name: str) -> tuple[Chunk, AsyncIterator[Chunk]]:
            provider = self.providers[name]
            convert = request.kind == "completion" and not provider.native_completions
            stream = provider.stream(legacy.as_chat(request) if convert else request)
            try:
                first = await self._first_chunk(run, name, stream)
            except StopAsyncIteration:
                raise errors.UpstreamServerError(
                    f"{name}: the upstream sent an empty stream", deployment=name
                ) from None
            except (errors.MarginError, asyncio.CancelledError):
                await close_stream(stream)
                raise
            if convert:
                return legacy.completion_chunk(first), _converted(stream)
            return first, stream

        attempt, (first, stream) = await self.failover(ctx, run, names, call)
        attempt.ttft_ms = (time.perf_counter() - attempt.started_at) * 1000
        self.resilience.latency.first_token_seen(attempt.deployment, attempt.ttft_ms / 1000)
        stream = self._watched(run, attempt.deployment, first, stream)
        self._succeed(
            ctx, run, attempt, str(first.body.get("model") or self.providers[attempt.deployment].deployment.model)
        )
        return first, attempt, stream

    # --- stream timeouts from measured latency (margin.resilience.observed_latency) ----------------

    async def _first_chunk(self, run: Run, name: str, stream: AsyncIterator[Chunk]) -> Chunk:
        """The stream's first chunk, within the deployment's measured first-token timeout when one
        applies (the adapter enforces the configured one in any case)."""
        latency = self.resilience.latency
        # Tightening only pays when another deployment can answer instead; alone, wait the full bound.
        bound = latency.first_token_timeout(name, self._timeouts(name)) if self._alternatives(run, name) else None
        if bound is None:
            return await anext(stream)
        try:
            async with asyncio.timeout(bound) as scope:
                return await anext(stream)
        except TimeoutError:
            if not scope.expired():
                raise
            latency.first_token_seen(name, bound)  # censored: it took at least that long
            raise errors.UpstreamTimeout(
                f"{name}: no first token within {bound:.3g}s (its measured first-token timeout)",
                deployment=name,
                code="first_token_timeout",
            ) from None

    async def _watched(
        self, run: Run, name: str, first: Chunk, stream: AsyncIterator[Chunk]
    ) -> AsyncGenerator[Chunk, None]:
        """`stream` after its first chunk, within the deployment's measured idle timeout when one
        applies; a stream that finishes reports its longest gap between chunks, for the next ones.
        Waits after the finish reason are the adapter's business (a trailing usage chunk, [DONE])."""
        latency = self.resilience.latency
        later = run.route[run.route.index(name) + 1 :] if name in run.route else ()
        # A break mid-answer is invisible only on a deployment that continues it (prefill).
        continuable = any(run.chain.fits(n) and self.resilience.limits[n].prefill for n in later)
        bound = latency.idle_timeout(name, self._timeouts(name)) if continuable else None
        watch = IdleWatch(bound) if bound is not None else None
        finished, longest = _finishes(first), 0.0
        try:
            while True:
                started = time.perf_counter()
                chunk = await (anext(stream, None) if watch is None or finished else watch.next(stream))
                if chunk is None:
                    break
                if not finished:
                    longest = max(longest, time.perf_counter() - started)
                    finished = _finishes(chunk)
                yield chunk
        except WentIdle:
            assert bound is not None
            latency.longest_gap_seen(name, bound)  # censored, as for the first token
            raise errors.UpstreamTimeout(
                f"{name}: stream went idle for {bound:.3g}s (its measured idle timeout)",
                deployment=name,
                code="idle_timeout",
            ) from None
        finally:
            if watch is not None:
                watch.close()
            await close_stream(stream)
        if finished:
            latency.longest_gap_seen(name, longest)

    def _timeouts(self, name: str) -> Timeouts:
        return self.providers[name].deployment.timeouts

    def counter(self, name: str) -> TokenCounter:
        count = getattr(self.providers.get(name), "count_tokens", None)
        return count if callable(count) else estimate_text_tokens

    @property
    def drains(self) -> bool:
        """Is a stream whose client left read to its end (rather than cancelled)?"""
        return self.resilience.failover.on_disconnect == "drain"

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run `work` beside the request path, tracked so that shutdown can cancel it."""
        task = asyncio.create_task(work, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def aclose(self) -> None:
        # One loop turn first: a task cancelled before its first step never runs its `finally`,
        # and the drains' `finally` is what ends their attempts and records them.
        await asyncio.sleep(0)
        tasks = list(self.background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def close_stream(stream: AsyncIterator[Chunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _finishes(chunk: Chunk) -> bool:
    for choice in chunk.body.get("choices") or ():  # noqa: SIM110 (a loop, not any(): runs for every chunk)
        if isinstance(choice, dict) and choice.get("finish_reason"):
            return True
    return False


async def _converted(stream: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    try:
        async for chunk in stream:
            yield legacy.completion_chunk(chunk)
    finally:
        await close_stream(stream)
