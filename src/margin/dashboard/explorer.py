"""The spend explorer: spend and traffic by org, team, user, key, tag, model, cost rank or deployment
over a window, with a time series per hour or day, from the rollups only.

The rollups hold one dimension per cell (key, team, tag, model, cost rank, deployment). Org and user
are read from the key dimension, each key counted under its owner's org and user (the ledger's org
and user are the key's, so this is exact); a team or org filter applies to team, key, user and org
groupings, the others mix every team in a cell and take no filter. Batch and rollout are not in the
rollups: asking for them is a 400 that says so.

A viewer (a team's key) may group by team, key or user, and sees its own team's cells only; an org
viewer also by org, and sees its org's keys (and the teams whose every key is in the org) only."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from margin.dashboard.overview import org_teams
from margin.dashboard.query import Window, check_params, choice, window
from margin.dashboard.tables import Cell, money, page_figures, ratio, table
from margin.errors import InvalidRequest, PermissionDenied
from margin.ledger.report import REPORT_DIMENSIONS, TOTAL, merge_rows
from margin.storage.protocols import GroupBy, KeyRecord, LedgerStore, ReportRow
from margin.storage.rollups import NO_VALUE

PARAMS = ("by", "period", "since", "until", "team", "org")
BY_CHOICES = ("team", "key", "user", "org", "tag", "model", "cost_rank", "deployment")
VIEWER_BY = ("team", "key", "user")
FILTERABLE = ("team", "key", "user", "org")
NOT_IN_ROLLUPS = ("batch", "rollout")
TOP_SERIES = 8
GROUP_COLUMNS = (
    "group", "requests", "successful", "error_attempts", "cache_hits", "spend_usd", "cache_saved_usd",
    "routing_saved_usd", "spend_share",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Scope:
    """Who is looking: `team` and `org` None is the admin, else a team's or an org's viewer; `keys`
    every key record (org/user of each key)."""

    team: str | None
    keys: Mapping[str, KeyRecord] = field(default_factory=dict)
    org: str | None = None

    @property
    def viewer(self) -> bool:
        return self.team is not None or self.org is not None

    @property
    def team_keys(self) -> frozenset[str]:
        """The keys in scope: the team's, or the org's."""
        if self.org is not None:
            return frozenset(k for k, record in self.keys.items() if record.org == self.org)
        return frozenset(k for k, record in self.keys.items() if record.team == self.team)

    @property
    def teams(self) -> frozenset[str]:
        """The team cells in scope: the viewer's team, or the teams whose every key is in the org."""
        if self.org is not None:
            return org_teams(self.keys.values(), self.org)
        return frozenset() if self.team is None else frozenset({self.team})

    def json(self) -> dict[str, str | None]:
        return {"team": self.team} if self.org is None else {"team": None, "org": self.org}


@dataclass(frozen=True, slots=True)
class SpendQuery:
    by: str
    team: str | None
    org: str | None


def read_query(query: Mapping[str, str], scope: Scope) -> SpendQuery:
    check_params(query, PARAMS)
    if query.get("by") in NOT_IN_ROLLUPS:
        raise InvalidRequest(f"by={query['by']}: the rollups have no {query['by']} dimension (docs/dashboard.md)")
    by = choice(query, "by", BY_CHOICES, "team")
    team, org = query.get("team") or None, query.get("org") or None
    if (team or org) and by not in FILTERABLE:
        raise InvalidRequest(f"team and org filters apply to by={', '.join(FILTERABLE)}: a {by} cell mixes teams")
    if scope.team is not None:
        if by not in VIEWER_BY:
            raise PermissionDenied(f"a team's viewer may group by {', '.join(VIEWER_BY)}: a {by} cell mixes teams")
        if (team and team != scope.team) or org:
            raise PermissionDenied("a team's viewer sees its own team only")
        team = scope.team
    elif scope.org is not None:
        if by not in (*VIEWER_BY, "org"):
            raise PermissionDenied(f"an org's viewer may group by {', '.join(VIEWER_BY)}, org: a {by} cell mixes orgs")
        if (org and org != scope.org) or (team and team not in scope.teams):
            raise PermissionDenied("an org's viewer sees its own org only")
        org = scope.org
    known_teams = {record.team for record in scope.keys.values()}
    if team and scope.team is None and team not in known_teams:
        raise InvalidRequest(f"team={team!r}: no key belongs to that team")
    if org and org not in {record.org for record in scope.keys.values()}:
        raise InvalidRequest(f"org={org!r}: no key belongs to that org")
    return SpendQuery(by, team, org)


def grouping(spend: SpendQuery, scope: Scope) -> tuple[GroupBy, Callable[[str], str | None]]:
    """The rollup dimension to read, and each of its values' group (None: filtered out)."""
    keys = scope.keys
    team_org = {record.team: record.org for record in keys.values()}

    def kept(record: KeyRecord | None) -> bool:
        if spend.team or spend.org:
            return record is not None and spend.team in (None, record.team) and spend.org in (None, record.org)
        return True

    if spend.by == "team":
        if not (spend.team or spend.org):
            return "team", lambda value: value
        return "team", lambda value: value if spend.team in (None, value) and spend.org in (
            None, team_org.get(value)) else None  # fmt: skip
    if spend.by in ("key", "user", "org"):
        attribute = {"key": "key_id", "user": "user", "org": "org"}[spend.by]

        def of_key(value: str) -> str | None:
            record = keys.get(value)
            if not kept(record):
                return None
            return str(getattr(record, attribute)) if record is not None else value if spend.by == "key" else NO_VALUE

        return "key", of_key
    return REPORT_DIMENSIONS[spend.by], lambda value: value


def grouped(rows: Sequence[ReportRow], group_of: Callable[[str], str | None]) -> list[ReportRow]:
    groups: dict[str, list[ReportRow]] = {}
    for row in rows:
        group = group_of(row.group)
        if group is not None:
            groups.setdefault(group, []).append(row)
    merged = [merge_rows(group, members) for group, members in groups.items()]
    return sorted(merged, key=lambda row: (-row.cost_total, row.group))


async def build_spend(store: LedgerStore, query: Mapping[str, str], now: datetime, scope: Scope) -> dict[str, Any]:
    spend = read_query(query, scope)
    win = window(query, now.astimezone(UTC), default_since="7d", default_period="day")
    dimension, group_of = grouping(spend, scope)
    if scope.viewer and spend.by == "team":
        teams = scope.teams
        group_of = lambda value: value if value in teams and spend.team in (None, value) else None  # noqa: E731
    raw = await store.spend_report(win.since.timestamp(), win.until.timestamp(), dimension, histograms=False)
    rows = grouped(raw, group_of)
    total = merge_rows(TOTAL, rows)
    values = {row.group for row in raw} | (set(scope.keys) | {NO_VALUE} if dimension == "key" else set())
    if dimension == "team":
        values |= {record.team for record in scope.keys.values()}
    series = await _series(store, win, dimension, spend.by, group_of, [row.group for row in rows], values)
    notes = ["A row with several tags counts under each of them."] if spend.by == "tag" else []
    return page_figures(
        "spend",
        scope.team,
        window=win.as_json(),
        query={"by": spend.by, "team": spend.team or "", "org": spend.org or ""},
        summary={"spend_usd": money(total.cost_total), "requests": total.requests, "groups": len(rows),
                 "cache_saved_usd": money(total.saved_cost), "routing_saved_usd": money(total.routing_savings)},
        tables={
            "groups": table(f"Spend by {spend.by}", GROUP_COLUMNS, [_group_row(row, total) for row in rows]),
            "series": series,
        },
        notes=notes,
    )  # fmt: skip


def _group_row(row: ReportRow, total: ReportRow) -> list[Cell]:
    return [
        row.group, row.requests, row.successful, row.error_attempts, row.cache_hits, money(row.cost_total),
        money(row.saved_cost), money(row.routing_savings), ratio(row.cost_total, total.cost_total),
    ]  # fmt: skip


async def _series(
    store: LedgerStore,
    win: Window,
    dimension: GroupBy,
    by: str,
    group_of: Callable[[str], str | None],
    ranked: Sequence[str],
    values: set[str],
) -> dict[str, Any]:
    """Spend per bucket of the largest groups (by spend over the window), the rest as `other`, summed
    by the store: the page reads a few rows per bucket however many cells the window holds."""
    shown = list(ranked[:TOP_SERIES])
    groups = {value: group_of(value) for value in values}
    labels = {value: group for value, group in groups.items() if group is not None and group in shown}
    filtered = any(group is None for group in groups.values())
    included = sorted(v for v, g in groups.items() if g is not None and v not in labels) if filtered else None
    since, until = win.since.timestamp(), win.until.timestamp()
    points: dict[int, dict[str, Decimal]] = {}
    for start, label, spend in await store.bucket_spend(since, until, dimension, win.period_s, labels, included):
        cells = points.setdefault(start, {})
        column = "other" if label is None else label
        cells[column] = cells.get(column, Decimal(0)) + spend
    columns = [*shown, *(["other"] if len(ranked) > TOP_SERIES else [])]
    rows: list[list[Cell]] = [
        [datetime.fromtimestamp(start, UTC).isoformat(), *(money(cells.get(c, Decimal(0))) for c in columns)]
        for start, cells in sorted(points.items())
    ]
    return table(f"Spend per {win.period} by {by} (USD)", [win.period, *columns], rows)
