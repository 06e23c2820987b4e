"""The Overview page's figures: this month's spend against the monthly budget, its burn rate
and forecast, cost per request, what caching and routing saved, the cheapest cost rank's share of
traffic, and the top teams, keys and models. Computed from the ledger's rollups only
(`LedgerStore.spend_report`), never by scanning ledger rows, so a page view costs the same at any
ledger size. The HTML page and the JSON twin both render this one dict."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from margin.config.limits import BudgetConfig
from margin.ledger.report import SpendLine, SpendReport, build_spend_report
from margin.storage.protocols import KeyRecord, LedgerStore

TOP = 5
MONEY = Decimal("0.000001")  # the figures shown round to the micro-dollar; the ledger keeps them exact


def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def org_teams(keys: Iterable[KeyRecord], org: str) -> frozenset[str]:
    """The teams an org viewer sees as teams: those whose every key belongs to the org (a team cell
    of a team with keys in two orgs would mix them, so such a team is shown only through its keys)."""
    orgs: dict[str, set[str | None]] = {}
    for record in keys:
        if record.team:
            orgs.setdefault(record.team, set()).add(record.org)
    return frozenset(team for team, seen in orgs.items() if seen == {org})


def monthly_limit(budgets: Sequence[BudgetConfig], team: str | None, org: str | None = None) -> Decimal | None:
    """The monthly USD budget the Overview measures the month against: `scope: global` for the
    admin; for a team's viewer, the team's own (`team:NAME`, else `team:*`); for an org's, `org:NAME`."""
    scopes = (f"org:{org}",) if org is not None else ("global",) if team is None else (f"team:{team}", "team:*")
    for scope in scopes:
        limits = [b.limit_usd for b in budgets if b.scope == scope and b.window == "month" and b.limit_usd is not None]
        if limits:
            return min(limits)
    return None


@dataclass(frozen=True, slots=True)
class Totals:
    spend: Decimal = Decimal(0)
    requests: int = 0
    successful: int = 0
    saved_cost: Decimal = Decimal(0)
    routing_savings: Decimal = Decimal(0)

    @classmethod
    def of(cls, line: SpendLine | None) -> Totals:
        if line is None:
            return cls()
        return cls(line.spend, line.requests, line.successful, line.saved_cost, line.routing_savings)

    @classmethod
    def sum(cls, lines: Iterable[SpendLine]) -> Totals:
        total = cls()
        for line in lines:
            total = cls(total.spend + line.spend, total.requests + line.requests, total.successful + line.successful,
                        total.saved_cost + line.saved_cost, total.routing_savings + line.routing_savings)  # fmt: skip
        return total


async def build_overview(
    store: LedgerStore,
    budgets: Sequence[BudgetConfig],
    now: datetime,
    *,
    team: str | None = None,
    team_keys: frozenset[str] = frozenset(),
    org: str | None = None,
    teams: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Every team's figures (`team` and `org` None: the admin), or one team's (a viewer's, with
    `team_keys` the ids of that team's keys), or one org's (`team_keys` its keys, `teams` its
    teams; its totals are its keys' cells, exact: a row's org is its key's): a viewer's figures
    never include another team's or org's spend. Per-team model and cost-rank splits are not in the
    rollups, so a viewer's page has no such sections."""
    start, end = month_bounds(now.astimezone(UTC))
    admin = team is None and org is None
    dimensions = ("team", "key", "model", "cost_rank") if admin else ("team", "key")
    # Up to the end of today: the month's day cells only (today's holds nothing later than now), so a
    # page view reads as many cells at any traffic.
    today_end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    reports = {
        by: await build_spend_report(store, since=start, until=today_end, group_by=by, histograms=False)
        for by in dimensions
    }
    if admin:
        total = Totals.of(reports["model"].total)
        top = {by: _top(reports[by].lines) for by in ("team", "key", "model")}
    elif org is not None:
        total = Totals.sum(line for line in reports["key"].lines if line.group in team_keys)
        top = {by: _top([line for line in reports[by].lines if line.group in allowed]) for by, allowed in (
            ("team", teams), ("key", team_keys))}  # fmt: skip
    else:
        total = Totals.of(next((line for line in reports["team"].lines if line.group == team), None))
        top = {by: _top([line for line in reports[by].lines if line.group in allowed]) for by, allowed in (
            ("team", {team}), ("key", team_keys))}  # fmt: skip
    return {
        "scope": {"team": team} if org is None else {"team": None, "org": org},
        "period": {"start": start.isoformat(), "end": end.isoformat(), "now": now.isoformat()},
        "spend": _spend(total.spend, monthly_limit(budgets, team, org), elapsed=now - start, length=end - start),
        "requests": {"total": total.requests, "successful": total.successful},
        "cost_per_request_usd": _money(total.spend / total.requests if total.requests else None),
        "cost_per_successful_request_usd": _money(total.spend / total.successful if total.successful else None),
        "saved": {"cache_usd": _money(total.saved_cost), "routing_usd": _money(total.routing_savings)},
        "cheapest_cost_rank_share": _cheapest_share(reports["cost_rank"]) if admin else None,
        "top": top,
    }


def _spend(spent: Decimal, limit: Decimal | None, *, elapsed: Any, length: Any) -> dict[str, Any]:
    """Spend so far; per day; a straight-line forecast to the month's end; against the budget."""
    fraction = Decimal(elapsed.total_seconds()) / Decimal(length.total_seconds())
    forecast = spent / fraction if fraction > 0 else spent
    days = Decimal(elapsed.total_seconds()) / 86400
    return {
        "spent_usd": _money(spent),
        "burn_usd_per_day": _money(spent / days if days > 0 else None),
        "forecast_usd": _money(forecast),
        "budget_usd": _money(limit),
        "budget_used": _ratio(spent / limit if limit else None),
        "forecast_over_budget": bool(limit is not None and forecast > limit),
    }


def _cheapest_share(report: SpendReport) -> dict[str, Any] | None:
    """Requests answered at the lowest cost rank seen this month, over all requests (ranks are
    numbers; `-` marks refusals and hits that reached no deployment, left out)."""
    ranked = [line for line in report.lines if line.group.isdigit()]
    answered = sum(line.requests for line in ranked)
    if not answered:
        return None
    cheapest = min(ranked, key=lambda line: int(line.group))
    return {"cost_rank": int(cheapest.group), "share": _ratio(Decimal(cheapest.requests) / answered)}


def _top(lines: list[SpendLine]) -> list[dict[str, Any]]:
    return [_line(line) for line in lines[:TOP]]


def _line(line: SpendLine) -> dict[str, Any]:
    return {"group": line.group, "spend_usd": _money(line.spend), "requests": line.requests}


def _money(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount.quantize(MONEY, ROUND_HALF_EVEN))


def _ratio(value: Decimal | None) -> str | None:
    return None if value is None else str(value.quantize(Decimal("0.0001"), ROUND_HALF_EVEN))
