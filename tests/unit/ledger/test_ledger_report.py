"""Report windows, rollup segments, histogram percentiles, renderers and the /admin/spend JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.ledger_rows import make_row

from margin.ledger.report import admin_spend, build_spend_report, parse_when, report_window
from margin.ledger.report_render import render
from margin.storage import LedgerStore, open_ledger_store
from margin.storage.rollups import DAY, HOUR, MINUTE, latency_bin, percentile, rollup_segments

NOW = datetime(2026, 5, 4, 12, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("90m", NOW - timedelta(minutes=90)),
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC)),
        ("2026-05-01T08:15", datetime(2026, 5, 1, 8, 15, tzinfo=UTC)),
        ("2026-05-01T08:15+02:00", datetime(2026, 5, 1, 6, 15, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot read"):
        parse_when("last tuesday", NOW)
    with pytest.raises(ValueError, match="empty"):
        report_window("now", "1h", NOW)


def test_segments_cover_the_window_with_the_coarsest_buckets() -> None:
    day0 = 20_000 * DAY
    lo, hi = day0 + 23 * HOUR + 58 * MINUTE, day0 + 2 * DAY + HOUR + 2 * MINUTE + 30
    assert rollup_segments(lo, hi) == [
        (MINUTE, lo, day0 + DAY),
        (DAY, day0 + DAY, day0 + 2 * DAY),
        (HOUR, day0 + 2 * DAY, day0 + 2 * DAY + HOUR),
        (MINUTE, day0 + 2 * DAY + HOUR, day0 + 2 * DAY + HOUR + 3 * MINUTE),  # until rounds up
    ]
    assert rollup_segments(day0 + 10, day0 + 30) == [(MINUTE, day0, day0 + MINUTE)]
    assert rollup_segments(day0, day0) == []


def test_histogram_percentiles_are_within_the_bin_error() -> None:
    samples = [float(v) for v in range(1, 1001)]
    histogram: dict[int, int] = {}
    for value in samples:
        histogram[latency_bin(value)] = histogram.get(latency_bin(value), 0) + 1
    for q, exact in ((0.5, 500), (0.95, 950), (0.99, 990)):
        assert percentile(histogram, q) == pytest.approx(exact, rel=0.091)
    assert percentile({}, 0.5) is None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LedgerStore]:
    opened = open_ledger_store("sqlite:///{data_dir}/ledger.db", tmp_path)
    await opened.migrate()
    base = NOW.timestamp() - 3600
    await opened.write(
        [
            make_row(1, ts=base, tags=("a", "b"), cost_total=Decimal("0.25")),
            make_row(2, ts=base + 1, tags=("a",), cost_total=Decimal("0.75"), model="other"),
        ]
    )
    yield opened
    await opened.close()


async def test_tag_lines_may_overlap_but_the_total_does_not(store: LedgerStore) -> None:
    since, until = report_window("1d", "now", NOW)
    report = await build_spend_report(store, since=since, until=until, group_by="tag")
    assert {line.group: line.spend for line in report.lines} == {"a": Decimal("1.00"), "b": Decimal("0.25")}
    assert report.total.spend == Decimal("1.00") and report.total.requests == 2
    assert report.lines[0].request_share == 1.0
    table = render(report, "table")
    assert "$1.000000" in table and "(total)" in table
    records = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert [r["group"] for r in records] == ["a", "b", "(total)"] and records[1]["spend_usd"] == "0.25"
    assert json.loads(render(report, "json"))["total"]["spend_usd"] == "1"


async def test_admin_spend_returns_the_report_as_json(store: LedgerStore) -> None:
    body = await admin_spend(store, {"since": "2h", "by": "model"}, now=NOW)
    assert body["group_by"] == "model"
    assert [(g["group"], g["spend_usd"], g["spend_share"]) for g in body["groups"]] == [
        ("other", "0.75", 0.75),
        ("gpt-4o-mini", "0.25", 0.25),
    ]
    assert body["total"]["cost_per_1k_requests_usd"] == "500"
    assert set(body["total"]["latency_ms"]) == {"p50", "p95", "p99"}
    with pytest.raises(ValueError, match="by"):
        await admin_spend(store, {"by": "colour"}, now=NOW)


async def test_by_batch_names_each_batch_by_its_id_and_leaves_other_rows_out(tmp_path: Path) -> None:
    opened = open_ledger_store("sqlite:///{data_dir}/ledger.db", tmp_path)
    await opened.migrate()
    base = NOW.timestamp() - 3600
    rows = [
        make_row(1, ts=base, tags=("batch", "batch:batch_a"), cost_total=Decimal("0.10")),
        make_row(2, ts=base + 1, tags=("batch", "batch:batch_a", "team-x"), cost_total=Decimal("0.15")),
        make_row(3, ts=base + 2, tags=("batch", "batch:batch_b"), cost_total=Decimal("0.05")),
        make_row(4, ts=base + 3, tags=("interactive",), cost_total=Decimal("0.70")),
        make_row(5, ts=base + 4, tags=("batch:",), cost_total=Decimal("0.01")),  # no id: not a batch
    ]
    await opened.write(rows)
    try:
        since, until = report_window("1d", "now", NOW)
        report = await build_spend_report(opened, since=since, until=until, group_by="batch")
        assert [(line.group, line.spend, line.requests) for line in report.lines] == [
            ("batch_a", Decimal("0.25"), 2),
            ("batch_b", Decimal("0.05"), 1),
        ]
        assert report.total.spend == Decimal("1.01") and report.lines[0].spend_share == pytest.approx(0.25 / 1.01)
        body = await admin_spend(opened, {"since": "2h", "by": "batch"}, now=NOW)
        assert body["group_by"] == "batch" and [g["group"] for g in body["groups"]] == ["batch_a", "batch_b"]
    finally:
        await opened.close()
