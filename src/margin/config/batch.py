"""The batch tier's `batch:` section (docs/batch.md): OpenAI's limits by default, where the files
live, and how hard a replica's worker runs lines beside interactive traffic."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from margin.config.base import Strict

_WINDOW = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def window_seconds(window: str) -> int:
    """`24h` -> 86400 (a completion window: digits and one of s, m, h, d)."""
    found = _WINDOW.match(window)
    if found is None:
        raise ValueError(f"a completion window is a number and a unit (s, m, h, d), like 24h: {window[:32]!r}")
    return int(found.group(1)) * _UNIT_S[found.group(2)]


_OFF_PEAK = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})(?:\s+(\S+))?\s*$")


@dataclass(frozen=True, slots=True)
class Window:
    start: time
    end: time  # before `start`: the window runs past midnight
    zone: ZoneInfo

    def contains(self, instant: float) -> bool:
        now = datetime.fromtimestamp(instant, self.zone).time()
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end


def parse_window(text: str) -> Window:
    """`22:00-06:00 Europe/Berlin` (the zone defaults to UTC)."""
    found = _OFF_PEAK.match(text)
    if found is None:
        raise ValueError(f"a batch window is 'HH:MM-HH:MM Zone/Name', e.g. '22:00-06:00 Europe/Berlin': {text[:64]!r}")
    h1, m1, h2, m2, zone = found.groups()
    try:
        tz = ZoneInfo(zone or "UTC")
        return Window(time(int(h1), int(m1)), time(int(h2), int(m2)), tz)
    except (ValueError, ZoneInfoNotFoundError) as exc:
        raise ValueError(f"batch window {text[:64]!r}: {exc}") from None


class BatchConfig(Strict):
    enabled: bool = Field(True, description="serve /v1/files and /v1/batches and run their lines")
    max_file_bytes: int = Field(200 * 1024 * 1024, ge=1, description="largest upload (OpenAI: 200 MB)")
    max_requests: int = Field(50_000, ge=1, description="most lines in one batch (OpenAI: 50,000)")
    max_line_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="longest single line of an input file")
    completion_windows: list[str] = Field(
        default_factory=lambda: ["24h"], description="windows a batch may ask for (OpenAI accepts 24h only)"
    )
    blob_dir: str = Field("{data_dir}/batch-files", description="where file contents are kept")
    concurrency: int = Field(16, ge=1, le=4096, description="lines one replica runs at once")
    chunk_lines: int = Field(100, ge=1, le=100_000, description="lines leased to a worker at a time")
    lease_s: float = Field(30.0, gt=0, le=3600, description="a chunk not renewed this long is taken over")
    poll_s: float = Field(1.0, gt=0, le=60, description="how often an idle worker looks for work")
    line_attempts: int = Field(3, ge=1, le=20, description="tries per line on a transient failure")
    retry_backoff_s: float = Field(1.0, ge=0, le=600, description="first wait before a line is tried again")
    budget_pause_s: float = Field(60.0, gt=0, le=86_400, description="a batch out of budget waits this long")
    max_errors_listed: int = Field(1000, ge=1, description="validation errors a failed batch lists")
    windows: list[str] = Field(
        default_factory=list,
        description="off-peak windows when lines may start, e.g. '22:00-06:00 Europe/Berlin' (none: always)",
    )
    yield_above_in_flight: int | None = Field(
        None, ge=0, description="interactive upstream calls open on a tier's deployments above which the batch "
        "lines bound for that tier halve, coming back one line at a time when they are fewer (unset: no back-off)",
    )  # fmt: skip
    yield_above_by_deployment: dict[str, int] = Field(
        default_factory=dict, description="per deployment, the interactive calls open on it above which batch "
        "lines bound for its tier back off (overrides yield_above_in_flight for that tier)",
    )  # fmt: skip
    pressure_check_s: float = Field(0.25, gt=0, le=60, description="how often the back-off looks at the load")
    native_deployments: list[str] = Field(
        default_factory=list, description="hosted deployments (OpenAI, Anthropic) whose provider's own Batch API "
        "runs a batch whose every line goes to them, at the provider's batch price (`native`)",
    )  # fmt: skip
    native_poll_s: float = Field(30.0, gt=0, le=3600, description="how often a native batch's provider is asked")

    @field_validator("completion_windows")
    @classmethod
    def _completion_windows(cls, windows: list[str]) -> list[str]:
        for window in windows:
            window_seconds(window)
        return windows

    @field_validator("yield_above_by_deployment")
    @classmethod
    def _thresholds(cls, thresholds: dict[str, int]) -> dict[str, int]:
        for name, value in thresholds.items():
            if value < 0:
                raise ValueError(f"batch.yield_above_by_deployment.{name[:64]}: a number of calls, 0 or more")
        return thresholds

    @field_validator("windows")
    @classmethod
    def _off_peak_windows(cls, windows: list[str]) -> list[str]:
        for window in windows:
            parse_window(window)
        return windows
