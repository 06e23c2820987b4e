"""The dashboard: section (docs/dashboard.md). Its planner page needs a planner profile (what the
gateway's config does not otherwise carry: SLA, candidate models and GPUs, ops capacity, growth);
the ledger's measured traffic replaces the profile's volume, token sizes, hourly shape and mix."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from margin.config.base import Strict


class PlannerPageConfig(Strict):
    # A profile YAML file (as `margin plan PROFILE.yaml` takes; relative to the working directory) or
    # the profile inline (the same fields as a mapping).
    profile: str | dict[str, Any]
    since: str = "30d"  # the ledger window measured: now, 24h, 7d, 2026-05-01 (whole hours up to now)
    cache_ttl_s: float = Field(60.0, gt=0, le=3600)  # the plan is recomputed at most this often


class DashboardConfig(Strict):
    planner: PlannerPageConfig | None = None  # None: the planner page says how to enable it
