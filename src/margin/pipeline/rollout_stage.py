"""Rollouts on the request path (docs/rollouts.md): the route stage asks "which arm?" (`apply`),
the call stage's answer may be mirrored to the candidate, graded or judged (`answered`, and
`streamed` for a stream's answer once it has ended: all only queue work), and the record stage feeds
each arm's signals (`sink`). Shadow calls, online grading and the online judge run in bounded queues
beside the request path; a full queue drops the job and counts it.

A shadow call is a request of its own: a ledger row tagged `shadow`, billed to the rollout's
experiment principal (team `rollout:<id>`), never to the tenant whose request was mirrored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from prometheus_client import Counter

from margin import errors
from margin.config.rollout import RolloutsConfig
from margin.evals.graders.protocol import Grader, GraderEnv, Sample
from margin.evals.graders.registry import build_grader
from margin.pipeline.call import Caller
from margin.pipeline.context import RequestContext
from margin.pipeline.lifecycle import RequestLifecycle
from margin.pipeline.meter import Meter, StreamMeter
from margin.pipeline.record import RequestRecord
from margin.pipeline.rollout_judge import JUDGE_TAG, JudgeJob, OnlineJudgeDesk
from margin.rollout.drift import DriftWatch
from margin.rollout.engine import RolloutEngine
from margin.rollout.feedback import FeedbackDesk
from margin.rollout.offpath import OffPathQueue
from margin.rollout.sampling import ProductionSampler, SampleJob
from margin.rollout.service import settings_of
from margin.rollout.split import Assignment
from margin.routing.policies.checks import answer_text
from margin.storage.rollouts import Arm
from margin.types import ChatRequest, ChatResult, Principal, RouteDecision

SHADOW_TAG = "shadow"
_ANONYMOUS = Principal()  # a request without a key: its user and key say nothing of who asks


@dataclass(frozen=True, slots=True)
class AnswerJob:
    assignment: Assignment
    request: ChatRequest
    answer: str
    request_id: str
    endpoint: str


def sticky_key(ctx: RequestContext, sticky_by: Sequence[str]) -> str:
    """What keeps one client on one arm: the first of session header, user, key that is present;
    otherwise the request itself."""
    principal = ctx.principal
    for source in sticky_by:
        if source == "session" and (session := ctx.route_hints.get("session")):
            return f"session:{session}"
        if source == "user" and principal.user != _ANONYMOUS.user:
            return f"user:{principal.org}/{principal.user}"
        if source == "key" and principal.key_id != _ANONYMOUS.key_id:
            return f"key:{principal.key_id}"
    return f"request:{ctx.request_id}"


class RolloutStage:
    def __init__(
        self,
        engine: RolloutEngine,
        config: RolloutsConfig,
        *,
        caller: Caller,
        meter: Meter,
        sampler: ProductionSampler | None = None,
        drift: DriftWatch | None = None,
    ) -> None:
        self.engine = engine
        self.drift = drift  # re-asks the stable deployments their production samples (sample.reeval_every_s)
        self.sampler = sampler  # groups with `sample:` keep a redacted share of their requests
        if sampler is not None and engine.service.metrics is not None:
            sampler.on_skip = engine.service.metrics.sample_skipped
        self.sticky_by = tuple(config.sticky_by)
        self.caller, self.meter = caller, meter
        self.lifecycle: Callable[[RequestContext], RequestLifecycle] | None = None  # the pipeline's, once built
        self.shadows: OffPathQueue[AnswerJob] = OffPathQueue(
            self._shadow, size=config.shadow_queue, workers=config.shadow_concurrency, name="rollout-shadow"
        )
        self.grading: OffPathQueue[AnswerJob] = OffPathQueue(
            self._grade, size=config.grading_queue, workers=1, name="rollout-grade"
        )
        self._graders: dict[tuple[str, str], Grader] = {}
        self.feedback = FeedbackDesk(engine.service.store, engine.signals)  # POST /v1/feedback
        self.sampling: OffPathQueue[SampleJob] = OffPathQueue(
            self._sample, size=config.grading_queue, workers=1, name="production-sample"
        )
        self.judge = OnlineJudgeDesk(engine, size=config.judge_queue, workers=config.judge_concurrency)
        self.answer_max_chars = config.answer_max_chars
        self._requests: dict[tuple[str, str], Counter] = {}  # margin_rollout_requests_total's series, once looked up

    async def start(self) -> None:
        await self.engine.start()
        await self.shadows.start()
        await self.grading.start()
        await self.sampling.start()
        await self.judge.queue.start()
        if self.drift is not None:
            await self.drift.start()

    async def stop(self) -> None:
        await self.shadows.stop()
        await self.grading.stop()
        await self.sampling.stop()
        if self.sampler is not None:
            self.sampler.close()  # its redaction thread (the `pii` extra's)
        await self.judge.queue.stop()
        if self.drift is not None:
            await self.drift.stop()
        await self.engine.stop()

    # --- stage ④ ---------------------------------------------------------------------------------

    def apply(self, ctx: RequestContext, decision: RouteDecision) -> RouteDecision:
        """The decision with this request's arm applied. Pinned routes (x-margin-tier, a deployment
        asked for by name: no group has a rollout under that name) keep theirs."""
        if decision.policy == "pin":
            return decision
        split = self.engine.split.get(decision.model_group)
        if split is None:
            return decision
        assignment = ctx.rollout = split.assign(sticky_key(ctx, self.sticky_by), ctx.request_id)
        route = assignment.reroute(decision.deployments)
        return decision if route is decision.deployments else dataclasses.replace(decision, deployments=route)

    # --- after the answer: the whole text is in hand -------------------------------------------

    def answered(self, ctx: RequestContext, request: ChatRequest, result: ChatResult) -> None:
        """A non-streamed answer (its text is only read out when something will use it)."""
        group = self._sampled(ctx)
        a = ctx.rollout
        graded = a is not None and a.live and (a.grade or a.shadow or a.judge)
        if group is None and not graded:
            return
        text = answer_text(result.body)
        if group is not None:
            self._keep(ctx, group, request, text)
        if graded:
            self._hand_off(ctx, request, text)  # a full queue keeps fewer samples, grades fewer answers

    def streamed(self, ctx: RequestContext, request: ChatRequest, meter: StreamMeter, *, switched: bool) -> None:
        """A stream that ended whole: its answer as the stream meter collected it (joined once here,
        nothing added per chunk), sampled and handed off exactly like a non-streamed answer. A stream
        another deployment took over mid-way, one with several choices, or an answer over
        `rollouts.answer_max_chars` is neither sampled nor graded (counted)."""
        a = ctx.rollout
        graded = a is not None and a.live and (a.grade or a.shadow or a.judge)
        group = self._sampled(ctx)
        if group is None and not graded:
            return  # a stream nothing reads the answer of: nothing built, nothing joined
        whole = request.n == 1 and not switched
        text = meter.answer(self.answer_max_chars) if whole else None
        if text is None:
            self._not_handed_off(ctx, group, graded, "too_long" if whole else "not_whole")
        else:
            if group is not None:
                self._keep(ctx, group, request, text)
            if graded:
                self._hand_off(ctx, request, text)

    def stream_cut(self, ctx: RequestContext, status: str) -> None:
        """A stream that did not end whole (the client left, the upstream broke): nothing of its
        answer is sampled, graded, shadowed or judged; counted."""
        a = ctx.rollout
        graded = a is not None and a.live and (a.grade or a.shadow or a.judge)
        group = self._sampled(ctx)
        if group is not None or graded:
            self._not_handed_off(ctx, group, graded, "client_left" if status == "cancelled" else "error")

    def _keep(self, ctx: RequestContext, group: str, request: ChatRequest, text: str) -> None:
        """Queue the answer for the production sample; a full queue keeps fewer samples (counted)."""
        job = SampleJob(group, ctx.request_id, ctx.deployment or "", request.messages, text)
        if not self.sampling.submit(job) and self.sampler is not None:
            self.sampler.not_kept(group, "queue_full")

    def _not_handed_off(self, ctx: RequestContext, group: str | None, graded: bool, why: str) -> None:
        if group is not None and self.sampler is not None:
            self.sampler.not_kept(group, why)
        metrics = self.engine.service.metrics
        if graded and metrics is not None and ctx.rollout is not None:
            metrics.streams_unjudged.labels(ctx.rollout.model_group, why).inc()

    def _hand_off(self, ctx: RequestContext, request: ChatRequest, text: str) -> None:
        """Queue the answer for the grader, the shadow call or the judge (its assignment wants one)."""
        assignment = ctx.rollout
        assert assignment is not None
        job = AnswerJob(assignment, request, text, ctx.request_id, ctx.endpoint)
        if assignment.grade:
            self.grading.submit(job)  # a full grading queue just grades fewer answers
        if assignment.shadow:
            self._mirror(job)
        elif assignment.judge and assignment.arm in ("stable", "candidate") and assignment.step >= 0:
            arm: Arm = "candidate" if assignment.arm == "candidate" else "stable"
            self.judge.submit(JudgeJob(assignment, arm, assignment.step, request.messages, text, None, ctx.request_id))

    def _sampled(self, ctx: RequestContext) -> str | None:
        """The model group whose production sample keeps this request, if one does (the judge's own
        calls are not production traffic)."""
        if self.sampler is None or ctx.decision is None:
            return None
        group = ctx.decision.model_group
        if not self.sampler.wants(group, ctx.request_id) or (ctx.rollout is not None and ctx.rollout.arm == JUDGE_TAG):
            return None
        return group

    def _mirror(self, job: AnswerJob) -> None:
        a = job.assignment
        budget = self.engine.experiment_budget.get(a.rollout_id)
        spent = self.engine.experiment_spent.get(a.rollout_id, Decimal(0))
        why = "budget" if budget is not None and spent >= budget else None
        if why is None and not self.shadows.submit(job):
            why = "queue_full"
        if why is not None:
            self.engine.signals.dropped((a.rollout_id, -1, "shadow"))
            metrics = self.engine.service.metrics
            if metrics is not None:
                metrics.shadow_dropped.labels(a.model_group, why).inc()

    def _grader(self, rollout_id: str, kind: str) -> Grader | None:
        key = (rollout_id, kind)
        if key not in self._graders:
            record = self.engine.records.get(rollout_id)
            if record is None:
                return None
            settings = settings_of(record)
            spec = settings.online_grader if kind == "online" else settings.shadow.grader
            if spec is None:
                return None
            self._graders[key] = build_grader(spec, GraderEnv())
        return self._graders[key]

    async def _sample(self, job: SampleJob) -> None:
        assert self.sampler is not None
        await self.sampler.keep(job)

    async def _grade(self, job: AnswerJob) -> None:
        a = job.assignment
        grader = self._grader(a.rollout_id, "online")
        if grader is None:
            return
        grade = await grader.grade(Sample(job.request.messages, job.answer, item_id=job.request_id))
        arm: Arm = "candidate" if a.arm == "candidate" else "stable"
        self.engine.signals.quality((a.rollout_id, a.step, arm), grade.score or 0.0)  # no score fails

    async def _shadow(self, job: AnswerJob) -> None:
        """Ask the candidate the same question as the experiment's principal, then grade its
        answer against the stable one."""
        a = job.assignment
        assert self.lifecycle is not None, "RolloutStage.lifecycle is set by the composition root"
        ctx = RequestContext(request_id=f"{job.request_id}-shadow", endpoint=job.endpoint)  # type: ignore[arg-type]
        ctx.principal = Principal(
            key_id=f"rollout:{a.rollout_id}", org="margin", team=f"rollout:{a.rollout_id}", user=SHADOW_TAG,
            tags=(SHADOW_TAG, f"rollout:{a.rollout_id}"), endpoint_class="batch",
        )  # fmt: skip
        ctx.authenticated = True
        ctx.decision = RouteDecision(model_group=a.model_group, deployments=(a.candidate,), policy=SHADOW_TAG)
        ctx.rollout = dataclasses.replace(a, arm="shadow", step=-1, shadow=False, grade=False, judge=False)
        request = dataclasses.replace(job.request, stream=False, include_usage=False)
        try:
            async with self.lifecycle(ctx) as life:
                result = await self.caller.chat(ctx, request)
                life.usage = self.meter.usage_of(ctx, request, result.usage, result.body)
        except errors.MarginError:
            return  # recorded as the shadow arm's error by the record stage
        finally:
            self.judge.add_spent(a.rollout_id, ctx.cost.total.usd if ctx.cost is not None else Decimal(0))
        answer = answer_text(result.body)
        if a.judge:  # the shadow pair: the candidate's answer, the stable one as the reference
            self.judge.submit(JudgeJob(a, "shadow", -1, request.messages, answer, job.answer, job.request_id))
        grader = self._grader(a.rollout_id, "shadow")
        if grader is not None:
            sample = Sample(request.messages, answer, references=(job.answer,), item_id=job.request_id)
            grade = await grader.grade(sample)
            self.engine.signals.quality((a.rollout_id, -1, "shadow"), grade.score or 0.0)

    # --- stage ⑦ ---------------------------------------------------------------------------------

    def sink(self, batch: list[RequestRecord]) -> None:
        """Each finished request under a live rollout adds to its arm's signals: the outcome of
        the arm's own deployment (its first attempt there), its latency, TTFT and cost."""
        metrics = self.engine.service.metrics
        for record in batch:
            a = record.ctx.rollout
            if a is None:
                continue
            if metrics is not None:
                counted = self._requests.get((a.model_group, a.arm))
                if counted is None:
                    counted = self._requests[(a.model_group, a.arm)] = metrics.requests.labels(a.model_group, a.arm)
                counted.inc()
            if not a.live or a.arm == "promoted":
                continue
            if a.arm == JUDGE_TAG:  # a judge call: its cost is the experiment's (its budget)
                self._judge_call(record, a)
                continue
            own = a.stable if a.arm == "stable" else a.candidate
            attempt = next((x for x in record.ctx.attempts if x.deployment == own), None)
            if attempt is None:
                continue  # answered from the cache, or refused before any call: says nothing of the arm
            arm: Arm = a.arm
            self.engine.signals.request(
                (a.rollout_id, a.step, arm), ok=attempt.status == "ok", latency_ms=attempt.latency_ms,
                ttft_ms=attempt.ttft_ms, cost=attempt.cost.total.usd if attempt.cost is not None else None,
            )  # fmt: skip

    def _judge_call(self, record: RequestRecord, a: Assignment) -> None:
        cost = record.ctx.cost.total.usd if record.ctx.cost is not None else None
        self.engine.signals.request(
            (a.rollout_id, a.step, "judge"), ok=record.status == "ok", latency_ms=record.latency_s * 1000,
            ttft_ms=None, cost=cost,
        )  # fmt: skip
