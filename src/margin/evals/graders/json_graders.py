"""JSON graders: the answer is valid JSON; the answer is JSON that a JSON Schema accepts."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import jsonschema
from jsonschema.exceptions import SchemaError
from pydantic import Field, field_validator

from margin.evals.graders.options import GraderOptions, parse_options
from margin.evals.graders.protocol import Grade, GraderEnv, Sample

_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?\s*```\s*$", re.S)
_NOT_FOUND = object()


class JsonOptions(GraderOptions):
    strip_fences: bool = Field(True, description="Accept an answer wrapped in a ``` code fence")
    find: bool = Field(False, description="Use the first JSON object or array found anywhere in the answer")


def parse_answer(answer: str, options: JsonOptions) -> object:
    """The JSON value of the answer, or `_NOT_FOUND`."""
    text = answer.strip()
    fenced = _FENCE.match(text) if options.strip_fences else None
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    if options.find:
        decoder = json.JSONDecoder()
        for start in (i for i, c in enumerate(text) if c in "{["):
            try:
                return decoder.raw_decode(text, start)[0]
            except ValueError:
                continue
    return _NOT_FOUND


@dataclass(frozen=True, slots=True)
class JsonValidGrader:
    options: JsonOptions
    name: str = "json_valid"
    binary: bool = True
    requires_reference: bool = False

    async def grade(self, sample: Sample) -> Grade:
        parsed = parse_answer(sample.answer, self.options)
        return Grade.of(parsed is not _NOT_FOUND, "" if parsed is not _NOT_FOUND else "not valid JSON")


class SchemaOptions(JsonOptions):
    json_schema: dict[str, Any] | None = Field(
        None, alias="schema", description="Default: the item's reference is the schema"
    )

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_schema(value)
        return value


def check_schema(schema: Mapping[str, Any]) -> None:
    try:
        jsonschema.validators.validator_for(schema).check_schema(dict(schema))
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}") from None


@dataclass(frozen=True, slots=True)
class JsonSchemaGrader:
    options: SchemaOptions
    name: str = "json_schema"
    binary: bool = True

    @property
    def requires_reference(self) -> bool:
        return self.options.json_schema is None

    async def grade(self, sample: Sample) -> Grade:
        schema = self.options.json_schema or next((r for r in sample.references if isinstance(r, dict)), None)
        if schema is None:
            return Grade.undecided("no JSON Schema: give `schema` or an object reference")
        try:
            check_schema(schema)
        except ValueError as exc:
            return Grade.undecided(str(exc))
        parsed = parse_answer(sample.answer, self.options)
        if parsed is _NOT_FOUND:
            return Grade.of(False, "not valid JSON")
        validator = jsonschema.validators.validator_for(schema)(schema)
        error = jsonschema.exceptions.best_match(validator.iter_errors(cast(Any, parsed)))
        if error is None:
            return Grade.of(True)
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return Grade.of(False, f"{where}: {error.message}"[:300])


def json_valid(options: Mapping[str, Any], env: GraderEnv) -> JsonValidGrader:
    return JsonValidGrader(parse_options(JsonOptions, options, "json_valid"))


def json_schema(options: Mapping[str, Any], env: GraderEnv) -> JsonSchemaGrader:
    return JsonSchemaGrader(parse_options(SchemaOptions, options, "json_schema"))
