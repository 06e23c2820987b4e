"""Grader names -> factories: the built-in graders, then third-party ones registered under the
entry-point group `margin.graders` (name = a factory `(options, env) -> Grader`)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from margin.evals.errors import GraderSpecError
from margin.evals.graders import choice, json_graders, judge, numeric, similarity, text
from margin.evals.graders.protocol import Grader, GraderEnv, GraderFactory
from margin.evals.items import GraderSpec

ENTRY_POINT_GROUP = "margin.graders"

BUILTIN: dict[str, GraderFactory] = {
    "exact": text.exact,
    "normalised": text.normalised,
    "normalized": text.normalised,
    "regex": text.regex,
    "contains": text.contains,
    "numeric": numeric.numeric,
    "choice": choice.choice,
    "json_valid": json_graders.json_valid,
    "json_schema": json_graders.json_schema,
    "embedding": similarity.embedding,
    "judge": judge.judge,
}


def split_spec(spec: GraderSpec) -> tuple[str, dict[str, Any]]:
    """("numeric", {"abs_tol": 0.1}) from "numeric" or {"type": "numeric", "abs_tol": 0.1}."""
    if isinstance(spec, str):
        return spec, {}
    name = spec.get("type")
    if not isinstance(name, str) or not name:
        raise GraderSpecError("a grader given as an object needs a `type` (its name)", field="grader.type")
    return name, {k: v for k, v in spec.items() if k != "type"}


def plugin_names() -> list[str]:
    return sorted(entry.name for entry in entry_points(group=ENTRY_POINT_GROUP))


def factory_for(name: str) -> GraderFactory:
    if name in BUILTIN:
        return BUILTIN[name]
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            try:
                loaded: GraderFactory = entry.load()
            except (ImportError, AttributeError) as exc:
                raise GraderSpecError(f"grader plugin {name!r} ({entry.value}) cannot be loaded: {exc}") from None
            return loaded
    known = ", ".join(sorted(set(BUILTIN) - {"normalized"}) + plugin_names())
    raise GraderSpecError(f"unknown grader {name!r} (known: {known})", field="grader.type")


def build_grader(spec: GraderSpec, env: GraderEnv) -> Grader:
    """The grader a spec names, built with its options; GraderSpecError names what is wrong."""
    name, options = split_spec(spec)
    factory = factory_for(name)
    try:
        grader = factory(options, env)
    except GraderSpecError:
        raise
    except (ValueError, TypeError, ValidationError) as exc:  # a plugin's own option checks
        raise GraderSpecError(f"{name}: {exc}") from None
    if not isinstance(grader, Grader):
        raise GraderSpecError(f"grader {name!r} built {type(grader).__name__}, which is not a Grader")
    return grader


def requires_reference(grader: Grader) -> bool:
    """Whether the grader can only grade items that carry a reference (optional attribute)."""
    return bool(getattr(grader, "requires_reference", False))


def describe(spec: GraderSpec) -> Mapping[str, Any]:
    name, options = split_spec(spec)
    return {"type": name, **options}
