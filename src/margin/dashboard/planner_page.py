"""The planner page: the crossover chart computed from the ledger's measured traffic ("at your
current volume, self-hosting X would cost Y; it pays from Z requests/day").

The traffic is read from the hourly rollups (`margin.ledger.hourly_usage`, dimension `tier`: one
range scan, never raw rows); the planner profile comes from `dashboard.planner` (SLA, candidates,
ops capacity, growth), and the ledger replaces its volume, token sizes, hourly shape and tier mix,
as `margin plan --from-ledger` does. A plan takes tens of milliseconds, so its result (figures and
chart) is kept for `cache_ttl_s`. The page shows the whole gateway's traffic: the admin's only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from margin.charts import chart_html
from margin.config.dashboard import PlannerPageConfig
from margin.dashboard.explorer import Scope
from margin.dashboard.query import Window, check_params, window
from margin.dashboard.tables import Cell, money, page_figures, table
from margin.errors import ConfigError, PermissionDenied
from margin.ledger.hourly_usage import read_hourly_usage
from margin.metering.catalog import PriceCatalog
from margin.planner.catalog import Catalog, load_catalog
from margin.planner.costing import OptionCost
from margin.planner.ledger_input import LedgerError, profile_from_ledger, summarize_ledger
from margin.planner.plan import ClassPlan, Plan, plan
from margin.planner.profile import Profile, load_profile
from margin.planner.render.chart_specs import cost_chart, option_labels, plan_palette
from margin.planner.render.featured import cost_of
from margin.storage.protocols import LedgerStore

ENABLE = (
    "The planner page needs a planner profile: set dashboard.planner.profile in the config to a profile "
    "YAML (as `margin plan PROFILE.yaml` takes, see docs/planner.md) or the profile inline, then restart."
)
OPTION_COLUMNS = (
    "class", "option", "kind", "monthly_usd_today", "feasible", "crossover_requests_per_day", "crossover_growth",
)  # fmt: skip

HEADLINE_COLUMNS = (
    "class", "requests_per_day", "api", "api_monthly_usd", "self_hosted", "self_hosted_monthly_usd",
    "pays_from_requests_per_day",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class PlannerResult:
    figures: dict[str, Any]
    charts: str  # the cost-vs-volume chart of each class (HTML: canvas and JSON spec)


class PlannerPage:
    """The configured profile and catalog, and the last plan computed (kept `ttl_s`)."""

    def __init__(
        self, profile: Profile | None, catalog: Catalog | None, since: str = "30d", ttl_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.profile, self.catalog, self.since, self.ttl_s = profile, catalog, since, ttl_s
        self._monotonic = monotonic
        self._kept: tuple[float, PlannerResult] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(cls, config: PlannerPageConfig | None, prices: PriceCatalog) -> PlannerPage:
        if config is None:
            return cls(None, None)
        try:
            given = config.profile
            profile = Profile.model_validate(given) if isinstance(given, dict) else load_profile(Path(given))
        except (OSError, ValueError, ValidationError) as exc:
            raise ConfigError(f"dashboard.planner.profile: {exc}") from None
        return cls(profile, load_catalog(prices=prices), config.since, config.cache_ttl_s)

    async def result(self, ledger: LedgerStore, query: Mapping[str, str], now: datetime, scope: Scope) -> PlannerResult:
        check_params(query, ())
        if scope.viewer:
            raise PermissionDenied("the planner page is computed from the whole gateway's traffic: admin only")
        if self.profile is None or self.catalog is None:
            return PlannerResult(page_figures("planner", None, notes=[ENABLE]), "")
        async with self._lock:
            kept = self._kept
            if kept is not None and self._monotonic() < kept[0]:
                return kept[1]
            computed = await self._compute(ledger, now)
            self._kept = (self._monotonic() + self.ttl_s, computed)
            return computed

    async def _compute(self, ledger: LedgerStore, now: datetime) -> PlannerResult:
        assert self.profile is not None and self.catalog is not None
        win = window({"since": self.since}, now.astimezone(UTC), default_since=self.since, default_period="day")
        rows = await read_hourly_usage(ledger, win.since.timestamp(), win.until.timestamp())
        try:
            measured = profile_from_ledger(rows, self.profile)
            built = await asyncio.to_thread(plan, measured, self.catalog, summarize_ledger(rows))
        except LedgerError:
            note = f"No served requests in the ledger since {win.since.date()}: nothing to measure yet."
            return PlannerResult(page_figures("planner", None, window=win.as_json(), notes=[note]), "")
        except ValueError as exc:
            return PlannerResult(page_figures("planner", None, window=win.as_json(), notes=[f"No plan: {exc}"]), "")
        return PlannerResult(_figures(built, win), _charts(built))


def _figures(built: Plan, win: Window) -> dict[str, Any]:
    measured = built.measured
    assert measured is not None
    summary: dict[str, Cell] = {
        "measured_days": f"{measured.days:.2f}",
        "requests": measured.requests,
        "requests_per_day": _volume(measured.requests / measured.days),
        "spend_usd": money(measured.spend.usd),
    }
    rows: list[list[Cell]] = []
    headlines: list[list[Cell]] = []
    notes = []
    for cp in built.classes:
        rows += _option_rows(cp)
        text, figures = _headline(cp)
        notes.append(text)
        headlines.append([cp.name, *figures.values()])
    tables = {
        "crossover": table("Self-hosting at today's measured volume", HEADLINE_COLUMNS, headlines),
        "options": table("Options at today's measured volume", OPTION_COLUMNS, rows),
    }
    return page_figures("planner", None, window=win.as_json(), summary=summary, notes=notes, tables=tables)


def _option_rows(cp: ClassPlan) -> list[list[Cell]]:
    today = cp.scenarios[0]
    rows: list[list[Cell]] = []
    for option_id, label in option_labels(cp).items():
        cost = cost_of(today, option_id)
        cross = cp.crossover_for(option_id)
        at = None if cross is None or cross.requests_per_day is None else _volume(cross.requests_per_day)
        growth = None if cross is None or cross.growth_multiple is None else f"{cross.growth_multiple:.2f}"
        rows.append([cp.name, label, cost.kind, money(cost.total), "yes" if cost.feasible else "no", at, growth])
    return rows


def _headline(cp: ClassPlan) -> tuple[str, dict[str, Cell]]:
    """The self-hosted option that pays first (else the cheapest hosted one) against the comparison API."""
    today = cp.scenarios[0]
    api = cost_of(today, f"api:{cp.compare_to}") if cp.compare_to is not None else None
    hosted_ids = [h.option.id for h in cp.hosted if h.option.id in option_labels(cp)]
    paying = [c for c in cp.crossovers if c.requests_per_day is not None and c.option_id in hosted_ids]
    first = min(paying, key=lambda c: c.requests_per_day or 0.0) if paying else None
    chosen: OptionCost | None
    if first is not None:
        chosen = cost_of(today, first.option_id)
    else:
        feasible = [cost_of(today, i) for i in hosted_ids if cost_of(today, i).feasible]
        chosen = min(feasible, key=lambda c: c.total) if feasible else None
    volume = _volume(today.demand.requests_per_day)
    figures: dict[str, Cell] = {
        "requests_per_day": volume,
        "api": api.label if api else None, "api_monthly_usd": money(api.total) if api else None,
        "self_hosted": chosen.label if chosen else None,
        "self_hosted_monthly_usd": money(chosen.total) if chosen else None,
        "pays_from_requests_per_day": _volume(first.requests_per_day) if first and first.requests_per_day else None,
    }  # fmt: skip
    if chosen is None:
        return f"{cp.name}: no self-hosted option is feasible for this profile.", figures
    never = cp.crossover_for(chosen.option_id)
    why = f" ({never.reason.removeprefix('never: ')})" if never is not None and never.reason else ""
    pays = f"it pays from {figures['pays_from_requests_per_day']} requests/day" if first else f"it never pays{why}"
    against = f" (against {api.label}: ${money(api.total)}/month)" if api else ""
    text = (f"{cp.name}: at your current volume ({volume} requests/day), self-hosting {chosen.label} would cost "
            f"${money(chosen.total)}/month{against}; {pays}.")  # fmt: skip
    return text, figures


def _charts(built: Plan) -> str:
    palette = plan_palette(built)
    return "".join(
        chart_html(cost_chart(cp, built, palette), f"chart-planner-{i}") for i, cp in enumerate(built.classes)
    )


def _volume(requests_per_day: float) -> str:
    return str(Decimal(repr(requests_per_day)).quantize(Decimal("0.1")))
