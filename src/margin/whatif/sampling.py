"""Sizing and drawing the live sample of the weak tier, before any call is made.

The sample is of distinct prompts among the cache misses the strong tier answered (those without a
weak grade in the traffic file and with a recorded answer to grade against). Its size is what a
mean grade in [0, 1] needs for a one-sided interval of half-width `margin` at `confidence` with the
worst-case variance (1/4): n = ceil(z^2 / (4 margin^2)), at least `routing.min_labelled`; a
population smaller than that is sampled whole (a census). The draw is seeded (margin.evals.stats).

A sample budget (`max_samples`) below n, or a cost cap below the sample's cost estimated from the
catalog (Decimal: the weak tier's price on each drawn request's recorded tokens, plus the judge's
calls when the grader is a judge), refuses the sample with what it would need; no call is made and
the rest of the report is still produced.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from statistics import NormalDist

import numpy as np

from margin.evals.errors import GraderSpecError
from margin.evals.graders.judge import JudgeGrader
from margin.evals.graders.protocol import GraderEnv
from margin.evals.graders.registry import build_grader
from margin.evals.stats import SEED
from margin.metering.estimate import estimate_text_tokens
from margin.types import Usage
from margin.whatif.config import WhatifConfig
from margin.whatif.pricing import Pricer
from margin.whatif.traffic import Record, last_user_prompt

JUDGE_FRAME_TOKENS = 150  # the judge prompt's rubric and instructions around the texts


@dataclass(frozen=True)
class SamplePlan:
    needed: int  # distinct prompts for +-margin at the confidence (at least routing.min_labelled)
    population: int  # distinct prompts that could be sampled
    drawn: tuple[int, ...]  # record positions, one per drawn prompt (its first miss); empty when refused
    estimated_cost_usd: Decimal | None  # of the drawn sample; None: a price is unknown
    refusal: str | None = None

    @property
    def census(self) -> bool:
        return 0 < self.population <= self.needed


def needed_sample(confidence: float, margin: float) -> int:
    """Distinct prompts for a one-sided interval of half-width `margin` on a mean grade in [0, 1]."""
    z = NormalDist().inv_cdf(confidence)
    return math.ceil(z * z / (4 * margin * margin))


def candidates(records: Sequence[Record], outcomes: Sequence[str], config: WhatifConfig, pricer: Pricer) -> list[int]:
    """Positions of the first miss of each prompt the weak tier could be sampled on."""
    weak, strong = config.tiers.weak or "", pricer.price_of(config.tiers.strong)
    seen: set[tuple[str, str]] = set()
    found: list[int] = []
    for index, record in enumerate(records):
        if outcomes[index] not in ("miss", "ineligible") or not record.answer or not record.body:
            continue
        if record.model != config.tiers.strong and (strong is None or pricer.price_of(record.model) != strong):
            continue
        answer = record.tiers.get(weak)
        if answer is not None and answer.quality is not None:
            continue
        key = (record.task, last_user_prompt(record))
        if key not in seen:
            seen.add(key)
            found.append(index)
    return found


def plan_sample(records: Sequence[Record], outcomes: Sequence[str], config: WhatifConfig, pricer: Pricer) -> SamplePlan:
    sampling = config.sampling
    assert sampling is not None and config.tiers.weak is not None
    pool = candidates(records, outcomes, config, pricer)
    needed = max(needed_sample(config.routing.confidence, sampling.margin), config.routing.min_labelled)
    target = min(needed, len(pool))
    order = np.random.default_rng(SEED).permutation(len(pool))[:target]
    drawn = tuple(sorted(pool[i] for i in order))
    estimate, unpriced = _estimate(records, drawn, config, pricer)
    plan = SamplePlan(needed, len(pool), drawn, estimate)
    refusal = _refusal(plan, config, unpriced)
    if refusal is None:
        return plan
    return SamplePlan(needed, len(pool), (), estimate, refusal)


def _refusal(plan: SamplePlan, config: WhatifConfig, unpriced: str | None) -> str | None:
    sampling = config.sampling
    assert sampling is not None
    problem = grader_problem(config)
    if problem is not None:
        return problem
    size = len(plan.drawn)
    why = f"+-{sampling.margin:g} at {config.routing.confidence:g} confidence"
    if size > sampling.max_samples:
        return (
            f"live sampling refused: a sample of {size} distinct prompts is needed for {why} "
            f"(of {plan.population} that could be sampled); sampling.max_samples is {sampling.max_samples}: "
            f"raise it to {size}, or widen sampling.margin"
        )
    if sampling.cost_cap_usd is None:
        return None
    if plan.estimated_cost_usd is None:
        return f"live sampling refused: the sample's cost cannot be estimated ({unpriced}); add it under `prices:`"
    if plan.estimated_cost_usd > sampling.cost_cap_usd:
        buys = int(sampling.cost_cap_usd * size / plan.estimated_cost_usd)
        return (
            f"live sampling refused: the sample of {size} distinct prompts needed for {why} costs about "
            f"{plan.estimated_cost_usd:.4f} USD at catalog prices; sampling.cost_cap_usd is "
            f"{sampling.cost_cap_usd} USD, which buys about {buys}: raise the cap to "
            f"{plan.estimated_cost_usd.quantize(Decimal('0.01'), rounding='ROUND_CEILING')} USD"
        )
    return None


def judge_settings(config: WhatifConfig) -> JudgeGrader | None:
    """The judge the grader spec names (built without a target, to read its settings), or None."""
    sampling = config.sampling
    assert sampling is not None
    try:
        grader = build_grader(sampling.grader, GraderEnv(judge=sampling.judge))
    except GraderSpecError:
        return None  # refused by `_refusal`
    return grader if isinstance(grader, JudgeGrader) else None


def grader_problem(config: WhatifConfig) -> str | None:
    sampling = config.sampling
    assert sampling is not None
    try:
        build_grader(sampling.grader, GraderEnv(judge=sampling.judge))
    except GraderSpecError as exc:
        return f"live sampling refused: sampling.grader: {exc}"
    return None


def _estimate(
    records: Sequence[Record], drawn: Sequence[int], config: WhatifConfig, pricer: Pricer
) -> tuple[Decimal | None, str | None]:
    """The drawn sample's cost at catalog prices: the weak tier on each request's recorded tokens,
    and the judge's calls (both orders; the recorded answer too when the line has no `quality`)."""
    weak = config.tiers.weak or ""
    judge = judge_settings(config)
    if pricer.price_of(weak) is None:
        return None, f"no price for the weak tier {weak!r}"
    if judge is not None and pricer.price_of(judge.settings.model) is None:
        return None, f"no price for the judge {judge.settings.model!r}"
    total = Decimal(0)
    for index in drawn:
        record = records[index]
        total += pricer.cost(weak, record.usage) or Decimal(0)
        if judge is not None:
            calls = 2 if record.quality is not None else 4
            answer = record.usage.output + record.usage.output_reasoning
            prompt = record.usage.input_total + 2 * answer + JUDGE_FRAME_TOKENS
            prompt += estimate_text_tokens(judge.settings.rubric)
            usage = Usage(input_uncached=prompt, output=judge.settings.max_tokens, source="estimated")
            total += calls * (pricer.cost(judge.settings.model, usage) or Decimal(0))
    return total, None
