"""The judge grader: each verdict asked in both orders, counted only when they agree."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from evals_support import ScriptedCompleter, answer, sample

from margin.evals.completion import Completion
from margin.evals.graders.protocol import Grade, GraderEnv
from margin.evals.graders.registry import build_grader
from margin.evals.items import JudgeSettings

GOOD, BAD = "Paris is the capital of France.", "Lyon, probably."


def prompt_of(messages: Sequence[Mapping[str, Any]]) -> str:
    return str(messages[-1]["content"])


def first_shown(prompt: str) -> str:
    """Which answer the judge read first: the answer graded or the reference."""
    return "answer" if prompt.index("Answer") < prompt.index("Reference") else "reference"


async def judged(
    mode: str, reply: Any, answer_text: str = GOOD, ref: str | None = BAD
) -> tuple[Grade, ScriptedCompleter]:
    judge = ScriptedCompleter(reply)
    env = GraderEnv(judge=JudgeSettings(model="judge", mode=mode, scale=10, pass_score=0.7), judge_target=judge)  # type: ignore[arg-type]
    grader = build_grader("judge", env)
    refs = () if ref is None else (ref,)
    return await grader.grade(sample(answer_text, *refs, question="What is the capital of France?")), judge


def pairwise_by_content(model: str, messages: Sequence[Mapping[str, Any]]) -> Completion:
    """A fair judge: picks the letter under which the right answer (Paris) was shown."""
    prompt = prompt_of(messages)
    letter = "A" if prompt.index("Paris") < prompt.index("Lyon") else "B"
    return answer(f"Reasoning... WINNER: {letter}")


async def test_pairwise_asks_both_orders_and_counts_an_agreed_win() -> None:
    grade, judge = await judged("pairwise", pairwise_by_content)
    assert len(judge.calls) == 2
    first, second = (prompt_of(call[1]) for call in judge.calls)
    assert first.index(BAD) < first.index(GOOD) and second.index(GOOD) < second.index(BAD)  # swapped
    assert all(call[0] == "judge" and call[2]["temperature"] == 0 for call in judge.calls)
    assert (grade.score, grade.passed, grade.judge) == (1.0, True, "agreed")


async def test_pairwise_agreed_loss_and_tie() -> None:
    loss, _ = await judged("pairwise", pairwise_by_content, answer_text=BAD, ref=GOOD)
    assert (loss.score, loss.passed, loss.judge) == (0.0, False, "agreed")
    tie, _ = await judged("pairwise", lambda m, msgs: answer("WINNER: TIE"))
    assert (tie.score, tie.passed) == (0.5, True)


async def test_a_position_biased_judge_is_caught_and_the_item_fails() -> None:
    grade, _ = await judged("pairwise", lambda m, msgs: answer("WINNER: A"))  # always the first one shown
    assert (grade.score, grade.passed, grade.judge) == (None, False, "disagreed")
    assert "disagree" in grade.detail


def scored_by_position(model: str, messages: Sequence[Mapping[str, Any]]) -> Completion:
    """A judge that scores the answer 9 when it reads it first and 5 when it reads the reference first."""
    return answer("SCORE: 9" if first_shown(prompt_of(messages)) == "answer" else "SCORE: 5")


async def test_scored_judge_needs_both_orders_on_the_same_side_of_the_pass_mark() -> None:
    agreed, judge = await judged("scored", lambda m, msgs: answer("The answer is right. SCORE: 8"))
    assert (agreed.score, agreed.passed, agreed.judge) == (0.8, True, "agreed")
    orders = {first_shown(prompt_of(call[1])) for call in judge.calls}
    assert orders == {"answer", "reference"}
    split, _ = await judged("scored", scored_by_position)
    assert (split.score, split.passed, split.judge) == (None, False, "disagreed")
    both_low, _ = await judged("scored", lambda m, msgs: answer("SCORE: 3"))
    assert (both_low.score, both_low.passed, both_low.judge) == (0.3, False, "agreed")


async def test_scored_without_reference_swaps_rubric_and_answer() -> None:
    grade, judge = await judged("scored", lambda m, msgs: answer("SCORE: 10"), ref=None)
    assert grade.passed and grade.score == 1.0
    first, second = (prompt_of(call[1]) for call in judge.calls)
    assert first.startswith("Rubric") and not second.startswith("Rubric")


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (lambda m, msgs: answer("I think it is pretty good."), "unparseable"),
        (lambda m, msgs: answer("SCORE: 11"), "unparseable"),  # outside the scale
        (lambda m, msgs: Completion(text=None, error="HTTP 404: The model 'judge' does not exist"), "error"),
    ],
)
async def test_an_undecided_judge_fails_the_item_and_says_why(reply: Any, outcome: str) -> None:
    grade, _ = await judged("scored", reply)
    assert (grade.score, grade.passed, grade.judge) == (None, False, outcome)


async def test_pairwise_without_a_reference_is_undecided() -> None:
    grade, judge = await judged("pairwise", pairwise_by_content, ref=None)
    assert grade.score is None and not judge.calls


async def test_spec_options_override_the_manifest_judge() -> None:
    env = GraderEnv(judge=JudgeSettings(model="judge"), judge_target=ScriptedCompleter(pairwise_by_content))
    grader = build_grader({"type": "judge", "mode": "pairwise", "model": "other"}, env)
    grade = await grader.grade(sample(GOOD, BAD, question="capital of France?"))
    assert grade.passed
    assert env.judge_target.calls[0][0] == "other"  # type: ignore[union-attr]
