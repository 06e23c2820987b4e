"""Strict option models for built-in graders, and the parsing that turns their errors into
`GraderSpecError`s naming the option."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from margin.evals.errors import GraderSpecError


class GraderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


OptionsT = TypeVar("OptionsT", bound=GraderOptions)


def parse_options(model: type[OptionsT], options: Mapping[str, Any], grader: str) -> OptionsT:
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        field = f"grader.{where}" if where else "grader"
        raise GraderSpecError(f"{grader}: {first['msg']}", field=field) from None


def reference_texts(references: tuple[object, ...]) -> list[str]:
    """References as text: strings as they are, numbers and booleans as JSON writes them."""
    out = []
    for ref in references:
        if isinstance(ref, str):
            out.append(ref)
        elif isinstance(ref, bool):
            out.append("true" if ref else "false")
        elif isinstance(ref, int | float):
            out.append(repr(ref) if isinstance(ref, float) else str(ref))
    return out
