"""Multiple-choice grader: read the letter the answer chose, compare it with the reference letter."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from margin.evals.graders.options import GraderOptions, parse_options, reference_texts
from margin.evals.graders.protocol import Grade, GraderEnv, Sample

# Words after which "A" or "I" is still an option letter ("A or B", "A is right"), not an English word.
_LINKS = frozenset({"is", "was", "or", "and", "nor"})


class ChoiceOptions(GraderOptions):
    letters: str = Field("ABCDE", min_length=2, max_length=26, description="The letters the options are labelled with")

    @field_validator("letters")
    @classmethod
    def _letters(cls, value: str) -> str:
        value = value.upper()
        if not value.isalpha() or len(set(value)) != len(value):
            raise ValueError("letters must be distinct letters, e.g. ABCD")
        return value


def choice_letter(answer: str, letters: str) -> str | None:
    """The letter an answer chose, or None when it names none or several.

    In order: an explicit "answer: B" / "the answer is (b)"; an answer that starts with the letter
    and a mark ("B", "B.", "(B) Paris", "B: ..."); else the only capital option letter standing alone
    in the text ("I think C" -> C; "A or B" -> None)."""
    group = f"[{letters}{letters.lower()}]"
    explicit = re.findall(rf"\b(?:answer|choice|option)(?:\s+is)?\s*[:=]?\s*\(?({group})\)?(?![\w])", answer, re.I)
    if len({e.upper() for e in explicit}) == 1:
        return str(explicit[0]).upper()
    leading = re.match(rf"\s*\(?([{letters}])\)?(?:[.):]|\s*$)", answer)
    if leading:
        return leading.group(1)
    alone = {m.group(1) for m in re.finditer(rf"(?<![\w'])([{letters}])(?![\w'])", answer) if not _word(answer, m)}
    return alone.pop() if len(alone) == 1 else None


def _word(text: str, match: re.Match[str]) -> bool:
    """ "A" or "I" used as an English word ("A cat", "I think"), not as an option letter ("A is right")."""
    following = re.match(r"\s+([a-z]+)", text[match.end() :])
    return match.group(1) in "AI" and following is not None and following.group(1) not in _LINKS


@dataclass(frozen=True, slots=True)
class ChoiceGrader:
    options: ChoiceOptions
    name: str = "choice"
    binary: bool = True
    requires_reference: bool = True

    async def grade(self, sample: Sample) -> Grade:
        refs = {r.strip().strip("()").upper() for r in reference_texts(sample.references)}
        if not refs:
            return Grade.undecided("the item has no reference letter")
        chosen = choice_letter(sample.answer, self.options.letters)
        if chosen is None:
            return Grade.of(False, "no single choice letter in the answer")
        return Grade.of(chosen in refs, f"chose {chosen}")


def choice(options: Mapping[str, Any], env: GraderEnv) -> ChoiceGrader:
    return ChoiceGrader(parse_options(ChoiceOptions, options, "choice"))
