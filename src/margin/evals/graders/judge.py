"""The judge: a model group served through margin grades the answer against a rubric.

Judges are noisy and favour whichever text they read first, so every verdict is asked twice with the
two texts in swapped order (scored: the reference and the answer, or without a reference the rubric
and the answer; pairwise: answer A and answer B), and it counts only when both orders agree. A
disagreement, an unparseable reply or a failed judge call leaves the item without a score: it fails,
and the grade says why (`Grade.judge`), so runs can count and report each kind.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from margin.evals.errors import GraderSpecError
from margin.evals.graders.options import reference_texts
from margin.evals.graders.protocol import Grade, GraderEnv, Sample
from margin.evals.items import JudgeSettings

SYSTEM = "You are a careful, strict grader. Follow the output format exactly."
_SCORE = re.compile(r"SCORE\s*[:=]\s*(\d+(?:\.\d+)?)", re.I)
_WINNER = re.compile(r"WINNER\s*[:=]\s*\**\s*(A|B|TIE)\b", re.I)
Verdict = Literal["answer", "reference", "tie"]


@dataclass(frozen=True, slots=True)
class Reading:
    """What one order's judge call came to: a score (0..1) or a winner, or why there is none."""

    score: float | None = None
    winner: Verdict | None = None
    failure: Literal["unparseable", "error"] | None = None
    detail: str = ""


def scored_prompt(settings: JudgeSettings, sample: Sample, reference: str | None, swapped: bool) -> str:
    question = f"Question:\n{sample.question()}"
    answer = f"Answer to grade:\n{sample.answer}"
    rubric = f"Rubric: {settings.rubric}"
    if reference is not None:
        known = f"Reference answer (known to be right):\n{reference}"
        parts = [rubric, question, answer, known] if swapped else [rubric, question, known, answer]
    else:
        parts = [question, answer, rubric] if swapped else [rubric, question, answer]
    reply = f"Reply with one line: SCORE: <a number from 0 to {settings.scale}>, where {settings.scale} is best."
    return "\n\n".join([*parts, reply])


def pairwise_prompt(settings: JudgeSettings, sample: Sample, reference: str, swapped: bool) -> str:
    first, second = (sample.answer, reference) if swapped else (reference, sample.answer)
    return "\n\n".join(
        [
            f"Rubric: {settings.rubric}",
            f"Question:\n{sample.question()}",
            f"Answer A:\n{first}",
            f"Answer B:\n{second}",
            "Which answer is better by the rubric? Reply with one line: WINNER: A, WINNER: B or WINNER: TIE.",
        ]
    )


def read_score(reply: str, scale: int) -> Reading:
    found = _SCORE.findall(reply)
    if not found:
        return Reading(failure="unparseable", detail=f"no SCORE in {reply[:80]!r}")
    value = float(found[-1])
    if not 0 <= value <= scale:
        return Reading(failure="unparseable", detail=f"score {value:g} outside 0..{scale}")
    return Reading(score=value / scale)


def read_winner(reply: str, swapped: bool) -> Reading:
    found = _WINNER.findall(reply)
    if len({f.upper() for f in found}) != 1:
        return Reading(failure="unparseable", detail=f"no single WINNER in {reply[:80]!r}")
    letter = found[0].upper()
    if letter == "TIE":
        return Reading(winner="tie")
    answer_letter = "A" if swapped else "B"
    return Reading(winner="answer" if letter == answer_letter else "reference")


@dataclass(frozen=True, slots=True)
class JudgeGrader:
    settings: JudgeSettings
    env: GraderEnv
    name: str = "judge"
    binary: bool = False

    @property
    def requires_reference(self) -> bool:
        return self.settings.mode == "pairwise"

    async def grade(self, sample: Sample) -> Grade:
        refs = reference_texts(sample.references)
        reference = refs[0] if refs else None
        if self.settings.mode == "pairwise" and reference is None:
            return Grade.undecided("a pairwise judge needs a reference answer to compare with")
        first, second = await asyncio.gather(self._ask(sample, reference, False), self._ask(sample, reference, True))
        for failure in ("error", "unparseable"):
            failed = next((r for r in (first, second) if r.failure == failure), None)
            if failed is not None:
                return Grade.undecided(f"judge {failure}: {failed.detail}", judge=failed.failure)
        if self.settings.mode == "pairwise":
            return self._pairwise(first, second)
        return self._scored(first, second)

    def _scored(self, first: Reading, second: Reading) -> Grade:
        assert first.score is not None and second.score is not None
        passes = (first.score >= self.settings.pass_score, second.score >= self.settings.pass_score)
        detail = f"scores {first.score:.2f} / {second.score:.2f} (swapped)"
        if passes[0] != passes[1]:
            return Grade.undecided(f"judge orders disagree: {detail}", judge="disagreed")
        return Grade(score=(first.score + second.score) / 2, passed=passes[0], detail=detail, judge="agreed")

    @staticmethod
    def _pairwise(first: Reading, second: Reading) -> Grade:
        detail = f"winner {first.winner} / {second.winner} (swapped)"
        if first.winner != second.winner:
            return Grade.undecided(f"judge orders disagree: {detail}", judge="disagreed")
        score = {"answer": 1.0, "tie": 0.5, "reference": 0.0}[first.winner or "tie"]
        return Grade(score=score, passed=score >= 0.5, detail=detail, judge="agreed")

    async def _ask(self, sample: Sample, reference: str | None, swapped: bool) -> Reading:
        target = self.env.judge_target
        if target is None:
            return Reading(failure="error", detail="no judge target configured")
        if self.settings.mode == "pairwise":
            assert reference is not None
            prompt = pairwise_prompt(self.settings, sample, reference, swapped)
        else:
            prompt = scored_prompt(self.settings, sample, reference, swapped)
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
        params = {**self.settings.params, "max_tokens": self.settings.max_tokens}
        reply = await target.complete(self.settings.model, messages, params)
        if not reply.ok or reply.text is None:
            return Reading(failure="error", detail=reply.error or "no answer")
        if self.settings.mode == "pairwise":
            return read_winner(reply.text, swapped)
        return read_score(reply.text, self.settings.scale)


def judge(options: Mapping[str, Any], env: GraderEnv) -> JudgeGrader:
    """Options override the manifest's `judge:` settings field by field."""
    base = env.judge.model_dump() if env.judge is not None else {}
    merged = {**base, **options}
    if "model" not in merged:
        raise GraderSpecError("judge needs a model: a `judge:` section in the manifest, or a `model` option")
    try:
        settings = JudgeSettings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "grader." + ".".join(str(p) for p in first["loc"])
        raise GraderSpecError(f"judge: {first['msg']}", field=field) from None
    return JudgeGrader(settings, env)
