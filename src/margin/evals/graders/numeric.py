"""Numeric grader: a number read from the answer equals a reference within a tolerance."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from pydantic import Field

from margin.evals.graders.options import GraderOptions, parse_options
from margin.evals.graders.protocol import Grade, GraderEnv, Sample

# 1,234.5  -17  .5  3e-4  3/4 (a fraction); thousands separators only in groups of three.
_NUMBER = re.compile(r"(?<![\w.])[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?(?:/\d+)?(?![\w])")


def numbers_in(text: str) -> list[float]:
    """Every number written in `text`, in order."""
    found = []
    for match in _NUMBER.finditer(text):
        raw = match.group().replace(",", "").replace("\u2212", "-").rstrip(".")
        if not any(c.isdigit() for c in raw):
            continue
        try:
            value = float(Fraction(raw)) if "/" in raw else float(raw)
        except (ValueError, ZeroDivisionError):
            continue
        found.append(value)
    return found


def as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        parsed = numbers_in(value)
        return parsed[0] if len(parsed) == 1 else None
    return None


class NumericOptions(GraderOptions):
    abs_tol: float = Field(1e-6, ge=0, description="Absolute tolerance")
    rel_tol: float = Field(0.0, ge=0, description="Relative tolerance (share of the reference)")
    pick: Literal["last", "first", "only"] = Field(
        "last", description="Which number of the answer counts; `only`: the answer must hold exactly one"
    )


@dataclass(frozen=True, slots=True)
class NumericGrader:
    options: NumericOptions
    name: str = "numeric"
    binary: bool = True
    requires_reference: bool = True

    async def grade(self, sample: Sample) -> Grade:
        refs = [n for n in (as_number(r) for r in sample.references) if n is not None]
        if not refs:
            return Grade.undecided("the item has no numeric reference")
        found = numbers_in(sample.answer)
        if not found:
            return Grade.of(False, "no number in the answer")
        if self.options.pick == "only" and len(found) != 1:
            return Grade.of(False, f"{len(found)} numbers in the answer, expected one")
        value = found[-1] if self.options.pick == "last" else found[0]
        ok = any(math.isclose(value, ref, rel_tol=self.options.rel_tol, abs_tol=self.options.abs_tol) for ref in refs)
        return Grade.of(ok, f"read {value:g}")


def numeric(options: Mapping[str, Any], env: GraderEnv) -> NumericGrader:
    return NumericGrader(parse_options(NumericOptions, options, "numeric"))
