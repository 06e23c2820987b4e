"""Text graders: exact, normalised, regex, contains; and the registry that builds them by name."""

from __future__ import annotations

import pytest
from evals_support import sample

from margin.evals.errors import GraderSpecError
from margin.evals.graders.protocol import GraderEnv
from margin.evals.graders.registry import build_grader
from margin.evals.graders.text import normalise


async def grade(spec: object, answer: str, *refs: object) -> tuple[float | None, bool]:
    grader = build_grader(spec, GraderEnv())  # type: ignore[arg-type]
    result = await grader.grade(sample(answer, *refs))
    return result.score, result.passed


async def test_exact_ignores_only_surrounding_whitespace() -> None:
    assert await grade("exact", "  Paris\n", "Paris") == (1.0, True)
    assert await grade("exact", "paris", "Paris") == (0.0, False)
    assert await grade("exact", "42", 42) == (1.0, True)  # a numeric reference compares as JSON writes it
    assert await grade("exact", "Rome", "Paris", "Rome") == (1.0, True)  # any of several references


async def test_normalised_drops_case_punctuation_articles_and_spacing() -> None:
    assert normalise("  The  Eiffel-Tower!! ") == "eiffeltower"
    assert await grade("normalised", "The Paris.", "paris") == (1.0, True)
    assert await grade("normalized", "Paris, France", "paris") == (0.0, False)


async def test_regex_uses_its_pattern_or_the_references() -> None:
    assert await grade({"type": "regex", "pattern": r"\b4\d\b"}, "it is 42") == (1.0, True)
    assert await grade({"type": "regex", "pattern": r"\b4\d\b"}, "it is 52") == (0.0, False)
    assert await grade({"type": "regex", "ignore_case": True}, "YES", r"^yes$") == (1.0, True)
    assert await grade({"type": "regex", "full": True, "pattern": "yes"}, " yes indeed") == (0.0, False)


async def test_contains_folds_case_by_default() -> None:
    assert await grade("contains", "The capital is PARIS.", "paris") == (1.0, True)
    assert await grade({"type": "contains", "ignore_case": False}, "PARIS", "paris") == (0.0, False)


async def test_a_grader_without_a_reference_gives_no_score_and_fails() -> None:
    grader = build_grader("exact", GraderEnv())
    result = await grader.grade(sample("Paris"))
    assert result.score is None and not result.passed
    assert "no reference" in result.detail


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ("telepathy", "grader.type", "unknown grader 'telepathy'"),
        ({"pattern": "x"}, "grader.type", "needs a `type`"),
        ({"type": "regex", "pattern": "("}, "grader.pattern", "not a valid regular expression"),
        ({"type": "regex", "patern": "x"}, "grader.patern", "Extra inputs are not permitted"),
        ({"type": "exact", "strict": True}, "grader", "takes no options"),
        ({"type": "numeric", "abs_tol": -1}, "grader.abs_tol", "greater than or equal to 0"),
        ({"type": "judge"}, "grader", "judge needs a model"),
    ],
)
def test_bad_specs_name_the_option(spec: object, field: str, words: str) -> None:
    with pytest.raises(GraderSpecError) as caught:
        build_grader(spec, GraderEnv())  # type: ignore[arg-type]
    assert caught.value.field == field
    assert words in caught.value.message
