"""A run's results: one JSON line per item, keyed by the item's id.

The file is appended to as items finish, so an interrupted run keeps what it did and a rerun skips
those items. A later line for the same id replaces an earlier one (a retried item). A last line cut
off half-way (the process was killed mid-write) is ignored; any other unreadable line is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer

from margin.evals.errors import ResultsFileError
from margin.evals.graders.protocol import JudgeOutcome
from margin.evals.run_params import describe_params


class ItemResult(BaseModel):
    """One item's outcome: the call (answer, timings, cost, tokens) and its grade."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    set: str
    set_version: str
    model: str
    # The run's settings: the set's params with the run's --param overrides (None: an older file).
    run_params: dict[str, Any] | None = None
    answer: str | None
    error: str | None = None  # the call failed: no answer to grade
    status: int | None = None
    score: float | None = None  # None: not graded or the grader could not decide (the item fails)
    passed: bool = False
    grader: str
    binary: bool
    detail: str = ""
    judge: JudgeOutcome | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cost_usd: Decimal | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    request_id: str | None = None
    deployment: str | None = None
    tags: list[str] = Field(default_factory=list)
    weight: float = 1.0
    finished_at: float = 0.0

    @field_serializer("cost_usd")
    def _exact(self, value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")  # money stays a decimal string

    @property
    def ok(self) -> bool:
        """The call answered (whatever the grade)."""
        return self.error is None

    @property
    def quality(self) -> float:
        """The score that counts in means: a failed call or an undecided grade counts as 0."""
        return self.score if self.score is not None and self.ok else 0.0

    def to_line(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json")) + b"\n"


@dataclass(frozen=True, slots=True)
class RunResults:
    """A run as read back: its items by id, in file order."""

    path: Path
    items: dict[str, ItemResult]

    @property
    def set_name(self) -> str:
        return next(iter(self.items.values())).set if self.items else ""

    @property
    def model(self) -> str:
        return next(iter(self.items.values())).model if self.items else ""

    @property
    def run_params(self) -> dict[str, Any] | None:
        return next(iter(self.items.values())).run_params if self.items else None

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[ItemResult]:
        return iter(self.items.values())


def read_results(path: Path) -> RunResults:
    """Every item's latest result; a missing file is an empty run."""
    items: dict[str, ItemResult] = {}
    if not path.exists():
        return RunResults(path, items)
    lines = path.read_bytes().split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            result = ItemResult.model_validate(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValidationError) as exc:
            if number == len(lines):
                continue  # every line is written with its newline: this one was cut off mid-write
            raise ResultsFileError(f"{path}:{number}: not a result line: {_first_error(exc)}") from None
        items[result.id] = result
    return RunResults(path, items)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)


def check_same_run(results: RunResults, set_name: str, model: str, run_params: dict[str, Any] | None = None) -> None:
    """A results file is resumed only by the run it belongs to (same set, same model, and the same
    settings where the file recorded them: a rerun must not mix two temperatures in one run)."""
    for result in results:
        if result.set != set_name or result.model != model:
            raise ResultsFileError(
                f"{results.path} holds results of set {result.set!r} for model {result.model!r}, "
                f"not {set_name!r} for {model!r}: choose another --out"
            )
        if result.run_params is not None and run_params is not None and result.run_params != run_params:
            raise ResultsFileError(
                f"{results.path} holds results run with {describe_params(result.run_params)}, "
                f"not {describe_params(run_params)}: choose another --out"
            )


class ResultsWriter:
    """Appends result lines as items finish, each flushed at once (a crash loses at most one line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[bytes] | None = None

    def __enter__(self) -> ResultsWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_cut_line()
        self._handle = self.path.open("ab")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def _drop_cut_line(self) -> None:
        """A last line cut off mid-write (no newline) is removed: its item runs again."""
        if not self.path.exists():
            return
        with self.path.open("r+b") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)

    def write(self, results: Iterable[ItemResult]) -> None:
        assert self._handle is not None, "use ResultsWriter as a context manager"
        for result in results:
            self._handle.write(result.to_line())
        self._handle.flush()
