"""The online judge of a rollout (docs/rollouts.md, "The online judge"): a configured share of the
canary's answers (both arms) and of the shadow pairs is graded by the evals judge grader, whose judge
is a model group served through margin itself. Beside the request path, in a bounded queue: when it
is full (or the rollout's experiment budget is spent) the answer is not judged, and that is counted.

A judge call is a request of its own, like a shadow call: ledger rows tagged `judge`, billed to the
rollout's experiment principal (team `rollout:<id>`), never to the tenant whose answer is judged, and
its cost counts against the rollout's experiment budget. A verdict counts only when both orders of
the judge agree; disagreements, unparseable judge answers and failed judge calls are counted per arm
(the rollout's status and `margin_rollout_judge_total`) and add nothing to the quality signal.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from margin.config.rollout import OnlineJudge
from margin.errors import MarginError
from margin.evals.completion import Completion
from margin.evals.graders.protocol import GraderEnv, Sample
from margin.evals.graders.registry import build_grader
from margin.pipeline.context import RequestContext
from margin.rollout.arms import JUDGE_OUTCOMES
from margin.rollout.engine import RolloutEngine
from margin.rollout.offpath import OffPathQueue
from margin.rollout.service import settings_of
from margin.rollout.split import Assignment
from margin.routing.policies.checks import answer_text
from margin.storage.rollouts import Arm
from margin.types import ChatRequest, ChatResult, Principal

JUDGE_TAG: Final = "judge"
Chat = Callable[[RequestContext, ChatRequest], Awaitable[ChatResult]]


@dataclass(frozen=True, slots=True)
class JudgeJob:
    assignment: Assignment  # the judged request's
    arm: Arm  # whose quality the verdict is: stable, candidate, or shadow (a shadow pair)
    step: int
    messages: Sequence[Mapping[str, Any]]
    answer: str
    reference: str | None  # a shadow pair: the stable answer
    request_id: str


def judge_principal(rollout_id: str) -> Principal:
    return Principal(
        key_id=f"rollout:{rollout_id}", org="margin", team=f"rollout:{rollout_id}", user=JUDGE_TAG,
        tags=(JUDGE_TAG, f"rollout:{rollout_id}"), endpoint_class="batch",
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class RolloutJudgeTarget:
    """The judge grader's `Completer`: margin asked in process as the rollout's experiment, the
    request tagged with the rollout and arm `judge` (so the record stage books its cost there)."""

    chat: Chat
    job: JudgeJob
    spent: Callable[[str, Decimal], None]

    async def complete(
        self, model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> Completion:
        a = self.job.assignment
        ctx = RequestContext(request_id=f"{self.job.request_id}-judge-{os.urandom(4).hex()}", endpoint="chat")
        ctx.principal, ctx.authenticated = judge_principal(a.rollout_id), True
        ctx.cache_control = "no-cache, no-store"
        ctx.rollout = dataclasses.replace(a, arm=JUDGE_TAG, step=self.job.step, shadow=False, grade=False, judge=False)
        request = ChatRequest(model=model, messages=[dict(m) for m in messages], params=dict(params))
        started = time.perf_counter()
        try:
            result = await self.chat(ctx, request)
        except MarginError as exc:
            return Completion(text=None, error=f"{type(exc).__name__}: {exc.message}", latency_ms=_ms(started))
        finally:
            self.spent(a.rollout_id, ctx.cost.total.usd if ctx.cost is not None else Decimal(0))
        return Completion(text=answer_text(result.body), latency_ms=_ms(started), request_id=ctx.request_id)


class OnlineJudgeDesk:
    def __init__(self, engine: RolloutEngine, *, size: int, workers: int) -> None:
        self.engine = engine
        self.chat: Chat | None = None  # the pipeline's, set by the composition root
        self.queue: OffPathQueue[JudgeJob] = OffPathQueue(self._judge, size=size, workers=workers, name="rollout-judge")

    def settings(self, rollout_id: str) -> OnlineJudge | None:
        record = self.engine.records.get(rollout_id)
        return settings_of(record).judge if record is not None else None

    def submit(self, job: JudgeJob) -> None:
        """Queue `job` unless the experiment budget is spent or the queue is full (then counted)."""
        rid = job.assignment.rollout_id
        budget = self.engine.experiment_budget.get(rid)
        spent = self.engine.experiment_spent.get(rid, Decimal(0))
        if budget is not None and spent >= budget:
            self._count(job, "dropped", why="budget")
        elif self.chat is None or not self.queue.submit(job):
            self._count(job, "dropped", why="queue_full")

    def add_spent(self, rollout_id: str, usd: Decimal) -> None:
        spent = self.engine.experiment_spent
        spent[rollout_id] = spent.get(rollout_id, Decimal(0)) + usd

    async def _judge(self, job: JudgeJob) -> None:
        settings = self.settings(job.assignment.rollout_id)
        if settings is None or self.chat is None:
            return  # the rollout ended meanwhile
        target = RolloutJudgeTarget(self.chat, job, self.add_spent)
        grader = build_grader(settings.grader_spec(), GraderEnv(judge_target=target))
        references = () if job.reference is None else (job.reference,)
        grade = await grader.grade(Sample(job.messages, job.answer, references=references, item_id=job.request_id))
        outcome = grade.judge or ("agreed" if grade.score is not None else "error")
        self._count(job, outcome)
        if outcome != "agreed" or grade.score is None:
            return  # no verdict: counted, never a score
        # A shadow pair's pairwise verdict is "not worse than stable" (a tie passes); a score is a score.
        score = (1.0 if grade.passed else 0.0) if job.arm == "shadow" and settings.mode == "pairwise" else grade.score
        self.engine.signals.quality((job.assignment.rollout_id, job.step, job.arm), score)

    def _count(self, job: JudgeJob, outcome: str, *, why: str | None = None) -> None:
        a = job.assignment
        self.engine.signals.judged((a.rollout_id, job.step, job.arm), JUDGE_OUTCOMES.index(outcome))
        metrics = self.engine.service.metrics
        if metrics is not None:
            metrics.judge.labels(a.model_group, why or outcome).inc()


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
