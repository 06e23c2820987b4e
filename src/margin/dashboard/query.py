"""The dashboard pages' query strings, read strictly: a parameter a page does not know, a value
outside its choices, a time it cannot read, a window the wrong way round or too long is a 400 that
says what to send instead (never a 500, never a silently ignored filter)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from margin.errors import InvalidRequest
from margin.ledger.report import report_window

PERIODS = {"hour": 3600, "day": 86400}
MAX_WINDOW = timedelta(days=400)  # hour and day rollups outlive `prune`; minute ones do not
MAX_BUCKETS = 400  # points of a time series a page draws


@dataclass(frozen=True, slots=True)
class Window:
    since: datetime
    until: datetime
    period: str  # "hour" | "day"

    @property
    def period_s(self) -> int:
        return PERIODS[self.period]

    def as_json(self) -> dict[str, str]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "period": self.period}


def _aligned(moment: datetime, period_s: int, *, up: bool) -> datetime:
    seconds = moment.timestamp()
    edge = (math.ceil(seconds / period_s) if up else math.floor(seconds / period_s)) * period_s
    return datetime.fromtimestamp(edge, UTC)


def check_params(query: Mapping[str, str], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(query) - set(allowed))
    if unknown:
        raise InvalidRequest(f"unknown parameter {unknown[0]!r}: this page reads {', '.join(allowed)}")


def choice(query: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = query.get(name, default)
    if value not in choices:
        raise InvalidRequest(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def window(query: Mapping[str, str], now: datetime, *, default_since: str, default_period: str) -> Window:
    """[since, until) from `since`/`until` (now, 24h, 7d, 2026-05-01, ...) widened to whole buckets of
    the series' `period` (hour or UTC day)."""
    period = choice(query, "period", tuple(PERIODS), default_period)
    try:
        since, until = report_window(query.get("since") or default_since, query.get("until"), now)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    # Whole buckets of the period: the figures are sums of the period's own rollup cells (as many per
    # window at any traffic, and the series adds up to the totals). Until "now" rounds up to the end
    # of the current bucket, which holds nothing later than now: the same figures.
    since, until = _aligned(since, PERIODS[period], up=False), _aligned(until, PERIODS[period], up=True)
    if until - since > MAX_WINDOW:
        raise InvalidRequest(f"the window is longer than {MAX_WINDOW.days} days: narrow since/until")
    if (until - since).total_seconds() / PERIODS[period] > MAX_BUCKETS:
        raise InvalidRequest(f"more than {MAX_BUCKETS} {period}s in the window: choose period=day or a shorter window")
    return Window(since, until, period)
