"""Per-minute demand for the simulator: a trace file (`minute,requests` lines) or a synthetic
diurnal profile from YAML. Counts are whole requests (numpy int64), one bucket per minute."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from margin.errors import ConfigError

Demand = npt.NDArray[np.int64]
MINUTES_PER_DAY = 1440


def read_trace(path: Path) -> Demand:
    """`minute,requests` per line (minute 0, 1, 2 ... in order; `#` comments and blank lines skipped).
    A bad line is refused with its number."""
    counts: list[int] = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ConfigError(f"{path}:{number}: expected `minute,requests` (two whole numbers), got {raw!r}")
        minute, requests = int(parts[0]), int(parts[1])
        if minute != len(counts):
            raise ConfigError(f"{path}:{number}: minute {minute} out of order (expected {len(counts)})")
        counts.append(requests)
    if not counts:
        raise ConfigError(f"{path}: no `minute,requests` lines")
    return np.asarray(counts, dtype=np.int64)


class DiurnalProfile(BaseModel):
    """Demand that peaks once a day: a raised cosine between `trough_rpm` and `peak_rpm` centred on
    `peak_hour`, zero during `quiet_hours` [start, end), Poisson noise drawn with `seed`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    days: int = Field(30, ge=1, le=366)
    peak_rpm: float = Field(gt=0)
    trough_rpm: float = Field(0.0, ge=0)
    peak_hour: float = Field(14.0, ge=0, lt=24)
    quiet_hours: tuple[int, int] | None = None
    noise: bool = True
    seed: int = 0

    @model_validator(mode="after")
    def _ordered(self) -> DiurnalProfile:
        if self.trough_rpm > self.peak_rpm:
            raise ValueError(f"trough_rpm ({self.trough_rpm}) > peak_rpm ({self.peak_rpm})")
        if self.quiet_hours is not None and not all(0 <= h <= 24 for h in self.quiet_hours):
            raise ValueError("quiet_hours are hours of the day, 0 to 24")
        return self

    def demand(self) -> Demand:
        minutes = np.arange(self.days * MINUTES_PER_DAY)
        hour = (minutes % MINUTES_PER_DAY) / 60.0
        shape = (1 + np.cos(2 * np.pi * (hour - self.peak_hour) / 24)) / 2
        rate = self.trough_rpm + (self.peak_rpm - self.trough_rpm) * shape
        if self.quiet_hours is not None:
            start, end = self.quiet_hours
            quiet = (hour >= start) & (hour < end) if start <= end else (hour >= start) | (hour < end)
            rate = np.where(quiet, 0.0, rate)
        if not self.noise:
            return np.rint(rate).astype(np.int64)
        return np.random.default_rng(self.seed).poisson(rate).astype(np.int64)


def load_profile(path: Path) -> Demand:
    """A `diurnal:` profile from YAML; a bad field is named."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or "diurnal" not in data:
        raise ConfigError(f"{path}: expected a `diurnal:` profile")
    try:
        return DiurnalProfile.model_validate(data["diurnal"]).demand()
    except ValidationError as exc:
        fields = "; ".join(f"diurnal.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {fields}") from None
