"""Windows: which counter buckets a limit sums at a given instant, and when it resets.

Calendar windows (day, week from Monday, month) are one bucket each, numbered in the configured time
zone, so a monthly budget resets at local midnight on the 1st, DST included. Rolling windows are
`n` buckets of `bucket_s` seconds: the limit covers the last n buckets (the current, partial one
included), so it frees up bucket by bucket instead of all at once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

CalendarUnit = Literal["day", "week", "month"]
_KEEP_S = 2 * 86400.0  # rows outlive their window a little: a late settle still finds them


@dataclass(frozen=True, slots=True)
class Span:
    start: float  # UTC epoch seconds when the window (its first bucket) began
    first: int
    last: int  # the current bucket: where new spend lands
    reset_at: float  # UTC epoch seconds when (some of) the window's spend stops counting
    expires_at: float  # when the current bucket's row may be dropped


@dataclass(frozen=True, slots=True)
class CalendarWindow:
    unit: CalendarUnit
    zone: ZoneInfo

    @property
    def tag(self) -> str:
        return f"{self.unit}@{self.zone.key}"

    def span(self, now: float) -> Span:
        local = datetime.fromtimestamp(now, self.zone)
        start, following = _period(local, self.unit)
        bucket = _bucket(start, self.unit)
        reset = following.timestamp()
        return Span(start=start.timestamp(), first=bucket, last=bucket, reset_at=reset, expires_at=reset + _KEEP_S)


def _period(local: datetime, unit: CalendarUnit) -> tuple[datetime, datetime]:
    """The local midnight that starts the period, and the one that starts the next."""
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "day":
        start = day
        nxt = (day + timedelta(days=1)).date()
    elif unit == "week":
        start = day - timedelta(days=day.weekday())
        nxt = (start + timedelta(days=7)).date()
    else:
        start = day.replace(day=1)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        nxt = start.replace(year=year, month=month).date()
    zone = local.tzinfo
    # Rebuild from the date: adding days across a DST change would keep the old UTC offset.
    return (
        datetime(start.year, start.month, start.day, tzinfo=zone),
        datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone),
    )


def _bucket(start: datetime, unit: CalendarUnit) -> int:
    if unit == "month":
        return start.year * 12 + start.month - 1
    return start.date().toordinal()  # a week is numbered by its Monday


@dataclass(frozen=True, slots=True)
class RollingWindow:
    length_s: float
    buckets: int

    @classmethod
    def hours(cls, hours: int) -> RollingWindow:
        return cls(hours * 3600.0, 24)

    @classmethod
    def minute(cls) -> RollingWindow:
        return cls(60.0, 12)  # 5-second buckets

    @property
    def bucket_s(self) -> float:
        return self.length_s / self.buckets

    @property
    def tag(self) -> str:
        return f"roll{int(self.length_s)}s"

    def span(self, now: float) -> Span:
        last = math.floor(now / self.bucket_s)
        boundary = (last + 1) * self.bucket_s
        first = last - self.buckets + 1
        return Span(
            start=first * self.bucket_s, first=first, last=last, reset_at=boundary, expires_at=boundary + self.length_s
        )


Window = CalendarWindow | RollingWindow


class SpanCache:
    """Spans change only at bucket boundaries: reuse each window's until its next one (the calendar
    arithmetic in a time zone costs more than the rest of a reservation)."""

    def __init__(self) -> None:
        self._spans: dict[Window, tuple[float, Span]] = {}

    def span(self, window: Window, now: float) -> Span:
        cached = self._spans.get(window)
        if cached is not None and cached[0] <= now < cached[1].reset_at:
            return cached[1]
        span = window.span(now)
        since = span.start if isinstance(window, CalendarWindow) else span.reset_at - window.bucket_s
        if len(self._spans) > 10_000:
            self._spans.clear()
        self._spans[window] = (since, span)
        return span


@dataclass(frozen=True, slots=True)
class Lease:
    """Slots holding reservations: a hold counts in its slot and the next, so at least one whole slot
    (`slot_s`, by default the request deadline + 60 s: longer than any request). A hold whose settle
    never comes (its replica died) is not left to lapse: its intent is swept (settled as spent) a
    little before one slot has passed, after the request's deadline and while the hold still
    counts, so the money is never free in between (margin.budgets.sweeper)."""

    slot_s: float

    def slot(self, now: float) -> int:
        return math.floor(now / self.slot_s)

    def expires_at(self, slot: int) -> float:
        return (slot + 3) * self.slot_s

    def sweep_at(self, reserved_at: float) -> float:
        """When a reservation made at `reserved_at` is swept if nobody settled it (its lease ended):
        its hold counts until at least `reserved_at + slot_s`; the sweepers get the last quarter of
        that, at most 30 s (they look every 2 s)."""
        return reserved_at + self.slot_s - min(30.0, self.slot_s / 4)
