"""`tuning:` (docs/tuning.md): which model groups (and teams) opt in to distillation datasets built
from their traffic, how datasets are deduplicated and split, what a student must show to be
promoted, and what a drift of the cheap tier does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from margin.config.base import Strict


class TuningSource(Strict):
    """One model group opted in: its production sample (`sample:`) feeds datasets whose targets are
    the answers of `teacher` (a tier of the group, or another model group)."""

    group: str = Field(min_length=1, description="the model group whose production sample is read")
    teacher: str = Field(min_length=1, description="a tier of the group (x-margin-tier) or a model group")
    teams: list[str] = Field(default_factory=list, description="only these teams' requests (empty: every team)")
    max_examples: int = Field(10_000, ge=1, le=1_000_000, description="the newest this many samples are read")
    retention_days: float = Field(90.0, gt=0, description="a dataset older than this is deleted by prune")
    auto_train_base: str | None = Field(
        None, description="drift.action start: the base deployment a drift-triggered job trains"
    )


class DedupSettings(Strict):
    """Prompts compared as vectors of character 3-5-grams (margin's hashing embedder), cosine."""

    near_duplicate: float = Field(0.95, gt=0, le=1, description="at or above: a near duplicate, dropped")
    same_split: float = Field(0.8, gt=0, le=1, description="at or above: related prompts, kept in one split")

    @model_validator(mode="after")
    def _ordered(self) -> DedupSettings:
        if self.same_split > self.near_duplicate:
            raise ValueError("tuning.dedup.same_split must not be above near_duplicate")
        return self


class SplitSettings(Strict):
    validation: float = Field(0.1, ge=0, lt=1, description="share of prompt clusters in the validation split")
    test: float = Field(0.1, gt=0, lt=1, description="share of prompt clusters held out for the gate")
    salt: str = Field("margin-tuning", min_length=1, description="changing it reshuffles every split")

    @model_validator(mode="after")
    def _room_for_train(self) -> SplitSettings:
        if self.validation + self.test >= 0.9:
            raise ValueError("tuning.split: validation + test must leave at least 10% for train")
        return self


class PromotionSettings(Strict):
    """The gate a student passes before a rollout starts: the group's `gates:` against the current
    cheap tier, and at least `min_teacher_ratio` of the teacher's mean score."""

    min_teacher_ratio: float = Field(0.9, gt=0, le=1.5, description="student mean score / teacher mean score")
    grader: str | dict[str, Any] = Field(
        "normalised", description="grades the student's answers on the test split against the teacher's"
    )
    concurrency: int = Field(4, ge=1, le=256, description="eval calls in flight during the gate")


class DriftTrigger(Strict):
    """A drift alert on an opted-in group's cheap tier (docs/evals.md, production samples)."""

    action: Literal["off", "propose", "start"] = Field(
        "propose", description="propose: log and record a proposal; start: also build a fresh dataset and queue a job"
    )

    @field_validator("action", mode="before")
    @classmethod
    def _yaml_off(cls, value: object) -> object:
        return "off" if value is False else value  # YAML 1.1 reads a bare `off` as false


class TuningConfig(Strict):
    sources: list[TuningSource] = Field(default_factory=list, description="opted-in model groups")
    min_examples: int = Field(20, ge=1, description="a dataset with fewer examples (all splits) is refused")
    max_prompt_chars: int = Field(32_000, ge=100, description="longer prompts are left out of a dataset")
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    drift: DriftTrigger = Field(default_factory=DriftTrigger)

    def source(self, group: str) -> TuningSource | None:
        return next((s for s in self.sources if s.group == group), None)


def check_tuning(tuning: TuningConfig, groups: Mapping[str, Sequence[str]], sampled: set[str]) -> None:
    """Each source names a model group with a production sample, and a teacher that is one of its
    tiers or a model group. `groups`: group name -> its tier names; aliases count as groups."""
    names = [s.group for s in tuning.sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"tuning.sources: {', '.join(twice)} listed twice")
    for source in tuning.sources:
        where = f"tuning.sources[{source.group}]"
        if source.group not in groups:
            raise ValueError(f"{where}.group: unknown model group (configured: {', '.join(sorted(groups)) or 'none'})")
        if source.group not in sampled:
            raise ValueError(f"{where}: the group keeps no production sample; give models[{source.group}].sample")
        if source.teacher not in groups[source.group] and source.teacher not in groups:
            raise ValueError(
                f"{where}.teacher: {source.teacher!r} is neither a tier of {source.group!r} "
                f"(tiers: {', '.join(groups[source.group]) or 'none'}) nor a model group"
            )
