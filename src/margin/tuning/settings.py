"""The settings of one LoRA training job (docs/tuning.md, "Training"): stored in the job's `job.json`,
so a resumed job trains with exactly what it started with."""

from __future__ import annotations

import re
from datetime import time

from pydantic import Field, field_validator, model_validator

from margin.config.base import Strict

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


class TrainSettings(Strict):
    rank: int = Field(16, ge=1, le=512, description="LoRA rank r")
    alpha: int = Field(32, ge=1, le=4096, description="LoRA alpha (the update is scaled by alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    target_modules: str = Field(
        "all-linear", pattern=r"^(all-linear|[A-Za-z0-9_.]+(,[A-Za-z0-9_.]+)*)$",
        description="all-linear, or module names separated by commas (q_proj,v_proj: fewer, faster to serve)",
    )  # fmt: skip
    learning_rate: float = Field(5e-4, gt=0, le=1, description="AdamW learning rate (linear decay)")
    steps: int = Field(300, ge=1, le=1_000_000, description="optimizer steps")
    batch_size: int = Field(4, ge=1, le=4096, description="examples per step")
    max_length: int = Field(512, ge=16, le=131_072, description="tokens per example; longer ones are cut")
    save_steps: int = Field(25, ge=1, description="a checkpoint every this many steps")
    keep_checkpoints: int = Field(3, ge=2, le=100, description="newest checkpoints kept (one may be torn)")
    seed: int = Field(42, description="data order, LoRA init and dropout")
    threads: int | None = Field(None, ge=1, le=1024, description="torch CPU threads (default: torch's choice)")
    nice: int = Field(10, ge=0, le=19, description="the worker's niceness: below interactive traffic")
    window: str | None = Field(
        None, description="off-peak window HH:MM-HH:MM (local time, may wrap midnight): the job starts only inside it"
    )
    exclusive: bool = Field(True, description="one job per machine: a second waits for the data dir's lock")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str | None) -> str | None:
        if value is not None and not _WINDOW.match(value):
            raise ValueError(f"window {value!r}: HH:MM-HH:MM, e.g. 22:00-06:00")
        return value

    @model_validator(mode="after")
    def _checkpoints_fit(self) -> TrainSettings:
        if self.save_steps > self.steps:
            raise ValueError(f"save_steps ({self.save_steps}) above steps ({self.steps}): no checkpoint would be saved")
        return self

    def window_bounds(self) -> tuple[time, time] | None:
        if self.window is None:
            return None
        match = _WINDOW.match(self.window)
        assert match is not None  # validated above
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        return time(h1, m1), time(h2, m2)


def in_window(bounds: tuple[time, time] | None, now: time) -> bool:
    """Whether `now` lies in the window [start, end), which may wrap midnight; no window: always."""
    if bounds is None:
        return True
    start, end = bounds
    if start == end:
        return True
    if start < end:
        return start <= now < end
    return now >= start or now < end
