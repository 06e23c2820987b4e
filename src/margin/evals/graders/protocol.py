"""The one grader contract, usable offline (a whole eval set) and online (one request and its answer).

A grader turns a `Sample` (what was asked, what came back, what a right answer looks like) into a
`Grade`. A grade with no score (`score is None`: a judge that could not decide, an unparseable judge
answer) never passes: the item fails and the reason is counted, rather than passing silently.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import JsonValue

from margin.embedding.protocol import Embedder
from margin.evals.completion import Completer
from margin.evals.items import JudgeSettings

JudgeOutcome = Literal["agreed", "disagreed", "unparseable", "error"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One (request, answer) pair. `references`: acceptable answers, a schema, or (for a pairwise
    judge online) the answer to compare against."""

    messages: Sequence[Mapping[str, Any]]
    answer: str
    references: tuple[JsonValue, ...] = ()
    item_id: str = ""

    def question(self) -> str:
        """The conversation as text, for graders that show it to a judge."""
        return "\n".join(f"{m.get('role', 'user')}: {m.get('content', '')}" for m in self.messages)


@dataclass(frozen=True, slots=True)
class Grade:
    score: float | None  # 0..1; None: the grader could not decide (the item fails)
    passed: bool
    detail: str = ""
    judge: JudgeOutcome | None = None  # set by judges: how the two orders came out

    @classmethod
    def of(cls, passed: bool, detail: str = "") -> Grade:
        return cls(score=1.0 if passed else 0.0, passed=passed, detail=detail)

    @classmethod
    def undecided(cls, detail: str, judge: JudgeOutcome | None = None) -> Grade:
        return cls(score=None, passed=False, detail=detail, judge=judge)


@runtime_checkable
class Grader(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def binary(self) -> bool:
        """Scores are only 0 or 1 (pass/fail): paired comparisons may use McNemar's test."""
        ...

    async def grade(self, sample: Sample) -> Grade: ...


@dataclass(slots=True)
class GraderEnv:
    """What graders may need beyond their options: the judge's settings and a way to call it, and
    embedders by name (built on first use, then shared)."""

    judge: JudgeSettings | None = None
    judge_target: Completer | None = None
    embedder_factory: Callable[[str], Embedder] | None = None
    _embedders: dict[str, Embedder] = field(default_factory=dict)

    def embedder(self, name: str) -> Embedder:
        if name not in self._embedders:
            if self.embedder_factory is None:
                raise RuntimeError("no embedder factory configured")
            self._embedders[name] = self.embedder_factory(name)
        return self._embedders[name]


# A grader factory: options (the spec without "type") and the environment -> a grader. Raises
# GraderSpecError (or ValueError / pydantic.ValidationError) on bad options. Built-in graders and
# third-party ones (entry-point group `margin.graders`) are both factories.
GraderFactory = Callable[[Mapping[str, Any], GraderEnv], Grader]
