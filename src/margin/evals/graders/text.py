"""Text graders: exact, normalised exact, regex, contains. Each passes when any reference matches."""

from __future__ import annotations

import operator
import re
import string
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from margin.evals.errors import GraderSpecError
from margin.evals.graders.options import GraderOptions, parse_options, reference_texts
from margin.evals.graders.protocol import Grade, GraderEnv, Sample

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    """Case, Unicode form, punctuation, articles and spacing removed (the SQuAD answer normalisation)."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _no_reference() -> Grade:
    return Grade.undecided("the item has no reference to compare with")


def _against_references(sample: Sample, prepare: Callable[[str], str], matches: Callable[[str, str], bool]) -> Grade:
    """Passes when `matches(answer, reference)` for any reference, both passed through `prepare`;
    undecided when the item has no reference. Serves exact, normalised and contains."""
    refs = reference_texts(sample.references)
    if not refs:
        return _no_reference()
    answer = prepare(sample.answer)
    return Grade.of(any(matches(answer, prepare(ref)) for ref in refs))


@dataclass(frozen=True, slots=True)
class ExactGrader:
    """The answer, surrounding whitespace removed, equals a reference exactly."""

    name: str = "exact"
    binary: bool = True
    requires_reference: bool = True

    async def grade(self, sample: Sample) -> Grade:
        return _against_references(sample, str.strip, operator.eq)


@dataclass(frozen=True, slots=True)
class NormalisedGrader:
    """Equal after `normalise` on both sides: "The Paris." matches "paris"."""

    name: str = "normalised"
    binary: bool = True
    requires_reference: bool = True

    async def grade(self, sample: Sample) -> Grade:
        return _against_references(sample, normalise, operator.eq)


class RegexOptions(GraderOptions):
    pattern: str | None = Field(None, description="Default: the item's references are the patterns")
    ignore_case: bool = False
    full: bool = Field(False, description="The whole answer (stripped) must match, not just a part")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


@dataclass(frozen=True, slots=True)
class RegexGrader:
    options: RegexOptions
    name: str = "regex"
    binary: bool = True

    @property
    def requires_reference(self) -> bool:
        return self.options.pattern is None

    async def grade(self, sample: Sample) -> Grade:
        patterns = [self.options.pattern] if self.options.pattern else reference_texts(sample.references)
        if not patterns:
            return _no_reference()
        flags = re.IGNORECASE if self.options.ignore_case else 0
        answer = sample.answer.strip() if self.options.full else sample.answer
        try:
            match = re.fullmatch if self.options.full else re.search
            return Grade.of(any(match(p, answer, flags) for p in patterns))
        except re.error as exc:  # a reference that is not a valid pattern
            return Grade.undecided(f"invalid pattern in the item's references: {exc}")


class ContainsOptions(GraderOptions):
    ignore_case: bool = True


@dataclass(frozen=True, slots=True)
class ContainsGrader:
    """A reference appears somewhere in the answer."""

    options: ContainsOptions
    name: str = "contains"
    binary: bool = True
    requires_reference: bool = True

    async def grade(self, sample: Sample) -> Grade:
        fold = str.casefold if self.options.ignore_case else str
        return _against_references(sample, fold, operator.contains)  # contains(answer, ref): ref in answer


def _no_options(name: str, options: Mapping[str, Any]) -> None:
    if options:
        raise GraderSpecError(f"{name} takes no options (got {', '.join(sorted(options))})", field="grader")


def exact(options: Mapping[str, Any], env: GraderEnv) -> ExactGrader:
    _no_options("exact", options)
    return ExactGrader()


def normalised(options: Mapping[str, Any], env: GraderEnv) -> NormalisedGrader:
    _no_options("normalised", options)
    return NormalisedGrader()


def regex(options: Mapping[str, Any], env: GraderEnv) -> RegexGrader:
    return RegexGrader(parse_options(RegexOptions, options, "regex"))


def contains(options: Mapping[str, Any], env: GraderEnv) -> ContainsGrader:
    return ContainsGrader(parse_options(ContainsOptions, options, "contains"))
