"""One eval item (a line of the set's JSONL) and the set's manifest (its optional YAML)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

# A grader by name ("exact") or with options ({"type": "numeric", "abs_tol": 0.01}).
GraderSpec = str | dict[str, JsonValue]


def greedy() -> dict[str, JsonValue]:
    """Default request parameters of evals and judges: temperature 0, the most repeatable answers."""
    return {"temperature": 0}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=0)
    name: str | None = None


class EvalItem(_Strict):
    """What to ask (`messages`, or a single user `prompt`), what a right answer looks like
    (`reference`, or several acceptable `references`), and how to grade it."""

    id: str = Field(min_length=1, max_length=200)
    messages: list[Message] | None = Field(None, min_length=1)
    prompt: str | None = None
    reference: JsonValue = None
    references: list[JsonValue] | None = Field(None, min_length=1)
    grader: GraderSpec | None = None
    tags: list[str] = Field(default_factory=list)
    weight: float = Field(1.0, gt=0, allow_inf_nan=False)
    params: dict[str, JsonValue] = Field(default_factory=dict, description="Request parameters for this item")

    @model_validator(mode="after")
    def _one_question(self) -> EvalItem:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of `messages` or `prompt`")
        if self.reference is not None and self.references is not None:
            raise ValueError("give `reference` or `references`, not both")
        forbidden = {"model", "messages", "stream", "stream_options"} & set(self.params)
        if forbidden:
            raise ValueError(f"params may not set {', '.join(sorted(forbidden))} (the run decides them)")
        return self

    def chat_messages(self) -> list[dict[str, Any]]:
        if self.messages is not None:
            return [m.model_dump(exclude_none=True) for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]

    def all_references(self) -> tuple[JsonValue, ...]:
        if self.references is not None:
            return tuple(self.references)
        return () if self.reference is None else (self.reference,)


class JudgeSettings(_Strict):
    """The judge: a model group served through margin that grades answers against a rubric.

    `scored`: the judge gives the answer a score from 0 to `scale`; it passes at `pass_score` (a
    share of the scale). `pairwise`: the judge says which of two answers is better (the item's
    reference answer, or online the stable deployment's answer, against the answer graded). Both
    ask twice, with the two texts in swapped order; the verdict counts only when both agree."""

    model: str = Field(min_length=1)
    mode: Literal["scored", "pairwise"] = "scored"
    rubric: str = Field(
        "Is the answer correct, complete and responsive to the question?",
        min_length=1,
    )
    scale: int = Field(10, ge=1, le=100)
    pass_score: float = Field(0.7, ge=0, le=1)
    max_tokens: int = Field(200, ge=1)
    params: dict[str, JsonValue] = Field(default_factory=lambda: greedy())


class EvalManifest(_Strict):
    """The optional YAML beside a set's JSONL: its name, version and defaults."""

    name: str = Field(min_length=1)
    version: str = "1"
    description: str = ""
    items: str | None = Field(None, description="The JSONL file, relative to the manifest (default: same stem)")
    grader: GraderSpec = "exact"
    judge: JudgeSettings | None = None
    params: dict[str, JsonValue] = Field(
        default_factory=lambda: greedy(), description="Request parameters for every item"
    )

    @model_validator(mode="before")
    @classmethod
    def _version_as_text(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("version"), int | float):
            return {**data, "version": str(data["version"])}  # `version: 2` in YAML is a number
        return data
