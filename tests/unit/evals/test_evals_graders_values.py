"""Numeric, multiple-choice, JSON and JSON Schema graders."""

from __future__ import annotations

import pytest
from evals_support import sample

from margin.evals.graders.choice import choice_letter
from margin.evals.graders.numeric import numbers_in
from margin.evals.graders.protocol import GraderEnv
from margin.evals.graders.registry import build_grader


async def grade(spec: object, answer: str, *refs: object) -> bool:
    result = await build_grader(spec, GraderEnv()).grade(sample(answer, *refs))  # type: ignore[arg-type]
    assert result.score in (0.0, 1.0)
    return result.passed


def test_numbers_are_read_as_people_write_them() -> None:
    assert numbers_in("2 + 3 = 5") == [2, 3, 5]
    assert numbers_in("The total is 1,234.50 dollars.") == [1234.5]
    assert numbers_in("-17 degrees, or .5 of 3/4, or 3e-4") == [-17, 0.5, 0.75, 0.0003]
    assert numbers_in("x2 and v1.2.3 are not numbers") == []


async def test_numeric_takes_the_last_number_within_tolerance() -> None:
    assert await grade("numeric", "7 + 5 = 12", 12)
    assert not await grade("numeric", "12, no wait, 13", 12)
    assert await grade({"type": "numeric", "pick": "first"}, "12, no wait, 13", 12)
    assert not await grade({"type": "numeric", "pick": "only"}, "7 + 5 = 12", 12)
    assert await grade({"type": "numeric", "abs_tol": 0.01}, "pi is 3.141", 3.14159)
    assert not await grade("numeric", "pi is 3.141", 3.14159)
    assert await grade({"type": "numeric", "rel_tol": 0.01}, "about 1,005", "1000")
    assert not await grade("numeric", "no idea", 12)


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),
        ("(C) Paris", "C"),
        ("The answer is (b).", "B"),
        ("Answer: D", "D"),
        ("I think C", "C"),
        ("A is right", "A"),
        ("A cat sat on the mat", None),  # "A" the article
        ("A or B", None),
        ("answer: A, no wait, answer: B", None),
        ("None of them", None),
    ],
)
def test_choice_letter_extraction(answer: str, letter: str | None) -> None:
    assert choice_letter(answer, "ABCDE") == letter


async def test_choice_grader_compares_letters() -> None:
    assert await grade("choice", "The answer is (b).", "B")
    assert not await grade("choice", "A", "B")
    assert await grade({"type": "choice", "letters": "WXYZ"}, "Z.", "(z)")


async def test_json_valid_accepts_fenced_json_and_can_find_it_in_prose() -> None:
    assert await grade("json_valid", '```json\n{"a": 1}\n```')
    assert not await grade({"type": "json_valid", "strip_fences": False}, '```json\n{"a": 1}\n```')
    assert not await grade("json_valid", 'Sure! {"a": 1}')
    assert await grade({"type": "json_valid", "find": True}, 'Sure! {"a": 1} Anything else?')


async def test_json_schema_from_the_reference_or_the_options() -> None:
    person = {
        "type": "object",
        "required": ["name", "age"],
        "properties": {"name": {"const": "Ada"}, "age": {"const": 36}},
    }
    assert await grade("json_schema", '{"name": "Ada", "age": 36}', person)
    assert not await grade("json_schema", '{"name": "Ada", "age": 37}', person)
    assert not await grade("json_schema", '{"name": "Ada"}', person)
    assert not await grade("json_schema", "Ada, 36", person)
    spec = {"type": "json_schema", "schema": {"type": "array", "items": {"type": "integer"}}}
    assert await grade(spec, "[1, 2, 3]")
    assert not await grade(spec, '[1, "2"]')


async def test_json_schema_says_where_the_answer_went_wrong() -> None:
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    result = await build_grader("json_schema", GraderEnv()).grade(sample('{"age": "old"}', schema))
    assert not result.passed and result.detail.startswith("age:")


async def test_an_invalid_schema_is_refused_up_front_or_leaves_the_item_ungraded() -> None:
    from margin.evals.errors import GraderSpecError

    with pytest.raises(GraderSpecError, match="not a valid JSON Schema"):
        build_grader({"type": "json_schema", "schema": {"type": "nonsense"}}, GraderEnv())
    result = await build_grader("json_schema", GraderEnv()).grade(sample("{}", {"type": "nonsense"}))
    assert result.score is None and not result.passed
