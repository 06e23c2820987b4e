"""Per-prompt outcome data (cheap vs strong tier) in the RouteLLM JSONL schema, and tier prices.

One JSON object per line:
  prompt (str), weak_score (float), strong_score (float)            required
  in_tokens_est, weak_out_tokens_est, strong_out_tokens_est (int)   optional: default chars/4 and 0
  id, benchmark, category (str), fold (int), contaminated (bool)    optional
Scores are any "higher is better" quality (0/1 correctness, a 1-10 judge grade ...). A row's `fold`
is kept as the file gives it (any integer, 0 included); only rows without one get a hash fold (1-4).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

Vector = NDArray[np.float64]
FOLDS = 4


class OutcomeFormatError(ValueError):
    """A line of an outcomes file does not follow the schema."""


@dataclass(frozen=True)
class Outcomes:
    """Column-oriented outcomes: row i of every field describes prompt i."""

    ids: tuple[str, ...]
    prompts: tuple[str, ...]
    benchmarks: tuple[str, ...]
    categories: tuple[str, ...]  # MMLU subject, MT-Bench category ...; the benchmark when not given
    weak_score: Vector
    strong_score: Vector
    in_tokens: Vector
    weak_out_tokens: Vector
    strong_out_tokens: Vector
    fold: NDArray[np.int64]
    contaminated: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.prompts)

    def take(self, mask: NDArray[np.bool_] | NDArray[np.intp]) -> Outcomes:
        """The rows selected by a boolean mask or an index array."""
        index = np.flatnonzero(mask) if mask.dtype == np.bool_ else np.asarray(mask, dtype=np.intp)
        return Outcomes(
            ids=tuple(self.ids[i] for i in index),
            prompts=tuple(self.prompts[i] for i in index),
            benchmarks=tuple(self.benchmarks[i] for i in index),
            categories=tuple(self.categories[i] for i in index),
            weak_score=self.weak_score[index],
            strong_score=self.strong_score[index],
            in_tokens=self.in_tokens[index],
            weak_out_tokens=self.weak_out_tokens[index],
            strong_out_tokens=self.strong_out_tokens[index],
            fold=self.fold[index],
            contaminated=self.contaminated[index],
        )

    def select(
        self,
        *,
        benchmarks: Iterable[str] | None = None,
        folds: Iterable[int] | None = None,
        include_contaminated: bool = False,
    ) -> Outcomes:
        """Filter by benchmark and fold; contaminated rows are dropped unless asked for."""
        mask = np.ones(len(self), dtype=np.bool_)
        if benchmarks is not None:
            wanted = set(benchmarks)
            mask &= np.array([b in wanted for b in self.benchmarks], dtype=np.bool_)
        if folds is not None:
            mask &= np.isin(self.fold, list(folds))
        if not include_contaminated:
            mask &= ~self.contaminated
        return self.take(mask)

    def benchmark_names(self) -> list[str]:
        return sorted(set(self.benchmarks))

    def fold_names(self) -> list[int]:
        return sorted({int(fold) for fold in self.fold})


@dataclass(frozen=True)
class TierPrices:
    """USD per million tokens for the cheap (weak) and the strong tier.

    Defaults are the models behind the RouteLLM data at the time: Mixtral-8x7B-Instruct at 0.60/0.60
    on hosted open-weight APIs, gpt-4-1106-preview at 10/30. Offline evaluation uses floats on purpose:
    these are estimates for a curve, not ledger amounts.
    """

    weak_input: float = 0.60
    weak_output: float = 0.60
    strong_input: float = 10.0
    strong_output: float = 30.0

    def weak_cost(self, outcomes: Outcomes) -> Vector:
        return (outcomes.in_tokens * self.weak_input + outcomes.weak_out_tokens * self.weak_output) / 1e6

    def strong_cost(self, outcomes: Outcomes) -> Vector:
        return (outcomes.in_tokens * self.strong_input + outcomes.strong_out_tokens * self.strong_output) / 1e6


def load_outcomes(path: Path | str) -> Outcomes:
    """Read an outcomes JSONL file (blank lines are skipped)."""
    records: list[Mapping[str, Any]] = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise OutcomeFormatError(f"{path}:{number}: not JSON ({error.msg})") from error
            if not isinstance(record, dict):
                raise OutcomeFormatError(f"{path}:{number}: expected a JSON object")
            records.append(record)
    return outcomes_from_records(records, source=str(path))


def concat_outcomes(parts: Sequence[Outcomes]) -> Outcomes:
    """The rows of every part, in order: e.g. a benchmark's outcomes and a tier's own measured ones
    (a tuned student's, written by `margin tune promote`)."""
    columns: dict[str, Any] = {}
    for spec in fields(Outcomes):
        values = [getattr(p, spec.name) for p in parts]
        columns[spec.name] = (
            tuple(v for value in values for v in value) if isinstance(values[0], tuple) else np.concatenate(values)
        )
    return Outcomes(**columns)


def outcomes_from_records(records: Sequence[Mapping[str, Any]], *, source: str = "<records>") -> Outcomes:
    """Build Outcomes from dicts in the JSONL schema, validating required fields."""
    for number, record in enumerate(records, start=1):
        _validate(record, f"{source}:{number}")
    prompts = tuple(str(r["prompt"]) for r in records)

    def column(name: str, default: Vector) -> Vector:
        values = [r.get(name) for r in records]
        return np.array([default[i] if v is None else float(v) for i, v in enumerate(values)], dtype=np.float64)

    chars_over_4 = np.array([len(p) / 4 for p in prompts], dtype=np.float64)
    zeros = np.zeros(len(records), dtype=np.float64)
    benchmarks = tuple(str(r.get("benchmark", "custom")) for r in records)
    return Outcomes(
        ids=tuple(str(r.get("id", i)) for i, r in enumerate(records)),
        prompts=prompts,
        benchmarks=benchmarks,
        categories=tuple(str(r.get("category") or b) for r, b in zip(records, benchmarks, strict=True)),
        weak_score=column("weak_score", zeros),
        strong_score=column("strong_score", zeros),
        in_tokens=column("in_tokens_est", chars_over_4),
        weak_out_tokens=column("weak_out_tokens_est", zeros),
        strong_out_tokens=column("strong_out_tokens_est", zeros),
        # A fold the file gives is kept as given (0 too); only a missing one is derived from the text.
        fold=np.array([_fold(r, p) for r, p in zip(records, prompts, strict=True)], dtype=np.int64),
        contaminated=np.array([bool(r.get("contaminated", False)) for r in records], dtype=np.bool_),
    )


def _fold(record: Mapping[str, Any], prompt: str) -> int:
    value = record.get("fold")
    return default_fold(prompt) if value is None else int(value)


def default_fold(prompt: str) -> int:
    """A stable fold (1-4) from the prompt text, for files that carry none."""
    return zlib.crc32(prompt.encode("utf-8")) % FOLDS + 1


def _validate(record: Mapping[str, Any], where: str) -> None:
    if not isinstance(record.get("prompt"), str):
        raise OutcomeFormatError(f"{where}: 'prompt' must be a string")
    for name in ("weak_score", "strong_score"):
        value = record.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OutcomeFormatError(f"{where}: {name!r} must be a number")
    fold = record.get("fold")
    # An integral float (2.0) is what some JSON writers emit for an int; "2", 2.5 or true are mistakes.
    whole = isinstance(fold, int) and not isinstance(fold, bool)
    if fold is not None and not whole and not (isinstance(fold, float) and fold.is_integer()):
        raise OutcomeFormatError(f"{where}: 'fold' must be an integer, not {fold!r}")
