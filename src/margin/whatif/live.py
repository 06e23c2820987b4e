"""Live sampling: the drawn requests sent to the weak tier through a running margin, graded.

The calls go over margin's own HTTP API through the evals' wire and target (margin.evals.gateway):
metered like any call, declared `x-margin-purpose: whatif` (their ledger rows are tagged `whatif`,
at endpoint class batch) and bypassing the response cache. Each answer is graded against the
recorded one (the reference) by the configured eval grader or judge (margin.evals.graders); the
recorded answer's own grade is the line's `quality`, or else the grader's grade of it against
itself (1 for the text graders; a judge is asked). A call that fails, or a grade the grader cannot
decide, leaves the prompt unlabelled (counted, listed). Before each call the spend so far (margin's
`x-margin-cost-usd` on the calls and the judge's) is checked against the cost cap: once it is
reached, the rest are not sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from margin.evals.completion import Completer, Completion
from margin.evals.errors import GraderSpecError
from margin.evals.gateway import GatewayTarget
from margin.evals.graders.protocol import Grader, GraderEnv, Sample
from margin.evals.graders.registry import build_grader
from margin.evals.graders.similarity import default_embedder
from margin.evals.wire import Wire
from margin.types import Usage
from margin.whatif.config import SamplingConfig
from margin.whatif.sampling import SamplePlan
from margin.whatif.traffic import Record, TierAnswer, last_user_prompt

PURPOSE = "whatif"


@dataclass
class SampleResult:
    grades: dict[int, tuple[float, float, Usage]] = field(default_factory=dict)  # position -> strong, weak, usage
    calls: int = 0  # to the weak tier
    judge_calls: int = 0
    spent_usd: Decimal = Decimal(0)  # margin's metered cost of every call (tier and judge)
    unmetered: int = 0  # calls whose answer carried no cost header
    failed: list[str] = field(default_factory=list)
    undecided: int = 0
    not_sent: int = 0  # left when the cost cap was reached


class _Metered:
    """A Completer that adds each call's metered cost to the result (the judge's calls go through it)."""

    def __init__(self, target: Completer, result: SampleResult, judge: bool) -> None:
        self.target, self.result, self.judge = target, result, judge

    async def complete(
        self, model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> Completion:
        completion = await self.target.complete(model, messages, params)
        if self.judge:
            self.result.judge_calls += 1
        else:
            self.result.calls += 1
        if completion.cost_usd is None:
            self.result.unmetered += 1
        else:
            self.result.spent_usd += completion.cost_usd
        return completion


async def measure(
    plan: SamplePlan,
    records: Sequence[Record],
    weak: str,
    target: Completer,
    grader: Grader,
    result: SampleResult,
    config: SamplingConfig,
) -> SampleResult:
    slots = asyncio.Semaphore(config.concurrency)

    async def one(index: int) -> None:
        async with slots:
            if config.cost_cap_usd is not None and result.spent_usd >= config.cost_cap_usd:
                result.not_sent += 1
                return
            await _one(records[index], index, weak, target, grader, result)

    await asyncio.gather(*(one(i) for i in plan.drawn))
    return result


async def _one(record: Record, index: int, weak: str, target: Completer, grader: Grader, result: SampleResult) -> None:
    messages = record.request.messages
    params = {k: v for k, v in record.request.params.items() if k != "n"}
    completion = await target.complete(weak, messages, params)
    if not completion.ok or completion.text is None:
        result.failed.append(f"line {record.line}: the weak tier's call failed: {completion.error}")
        return
    references = (record.answer,)
    weak_grade = await grader.grade(Sample(messages, completion.text, references, f"line {record.line}"))
    strong = record.quality
    if strong is None:
        strong = (await grader.grade(Sample(messages, record.answer, references, f"line {record.line}"))).score
    if weak_grade.score is None or strong is None:
        result.undecided += 1
        return
    usage = record.usage
    if completion.input_tokens is not None and completion.output_tokens is not None:
        usage = Usage(input_uncached=completion.input_tokens, output=completion.output_tokens)
    result.grades[index] = (float(strong), float(weak_grade.score), usage)


def apply_grades(records: Sequence[Record], outcomes: Sequence[str], result: SampleResult, weak: str) -> list[Record]:
    """Every miss of a sampled prompt carries its grades (repeats of one prompt move together)."""
    by_prompt = {(records[i].task, last_user_prompt(records[i])): g for i, g in result.grades.items()}
    updated = list(records)
    for index, record in enumerate(records):
        if outcomes[index] not in ("miss", "ineligible"):
            continue
        found = by_prompt.get((record.task, last_user_prompt(record)))
        if found is None or (weak in record.tiers and record.tiers[weak].quality is not None):
            continue
        strong, weak_grade, usage = found
        quality = record.quality if record.quality is not None else strong
        tiers = {**record.tiers, weak: TierAnswer(quality=weak_grade, usage=usage)}
        updated[index] = replace(record, quality=quality, tiers=tiers)
    return updated


class LiveSampler:
    """Sends a plan's sample through margin over a wire made by `wire_factory` (margin.providers.
    gateway_client.GatewayClient for a URL, margin.evals.asgi_wire.AsgiWire in-process)."""

    def __init__(self, config: SamplingConfig, wire_factory: Callable[[], Wire]) -> None:
        self.config = config
        self.wire_factory = wire_factory

    def __call__(self, plan: SamplePlan, records: Sequence[Record], weak: str) -> SampleResult:
        return asyncio.run(self._run(plan, records, weak))

    async def _run(self, plan: SamplePlan, records: Sequence[Record], weak: str) -> SampleResult:
        result = SampleResult()
        key = self.config.api_key.get_secret_value() if self.config.api_key is not None else None
        wire = self.wire_factory()
        try:
            target = GatewayTarget(wire, api_key=key, purpose=PURPOSE)
            judge = _Metered(GatewayTarget(wire, api_key=key, purpose=PURPOSE), result, judge=True)
            env = GraderEnv(judge=self.config.judge, judge_target=judge, embedder_factory=default_embedder)
            try:
                grader = build_grader(self.config.grader, env)
            except GraderSpecError as exc:
                result.failed.append(f"sampling.grader: {exc}")
                return result
            return await measure(
                plan, records, weak, _Metered(target, result, judge=False), grader, result, self.config
            )
        finally:
            await wire.aclose()
