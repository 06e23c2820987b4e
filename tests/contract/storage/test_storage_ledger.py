"""The ledger store contract, run against every backend: SQLite in a temp dir and a real PostgreSQL
server (tests/support/postgres.py; skipped with a message when PostgreSQL is not installed)."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tests.support.ledger_rows import make_row as sample_row
from tests.support.postgres import PostgresServer, postgres_server

from margin.config.model import DeploymentConfig
from margin.ledger.report import build_spend_report
from margin.ledger.reprice import reprice_ledger
from margin.metering.catalog import load_builtin_catalog
from margin.metering.pricebook import PriceBook
from margin.metering.pricing import price_usage
from margin.metering.unknown import UnknownPricePolicy
from margin.storage import GROUP_BY_CHOICES, GroupBy, LedgerStore, ReportRow, open_ledger_store
from margin.storage.ledger_row import LedgerRow
from margin.storage.rollups import bin_midpoint, latency_bin, percentile
from margin.types import Usage

D = Decimal
DAY0 = datetime(2026, 5, 4, tzinfo=UTC).timestamp()  # a UTC midnight
HOUR, DAY = 3600.0, 86400.0


def make_row(n: int, **changes: Any) -> LedgerRow:
    """The shared sample row, on a fixed day (the reports below read whole days)."""
    changes.setdefault("ts", DAY0 + 10 * HOUR + n)
    changes.setdefault("price_version", "builtin:2026.11.23")
    return sample_row(n, **changes)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"ledger_{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def store(ledger_url: str, tmp_path: Path) -> AsyncIterator[LedgerStore]:
    opened = open_ledger_store(ledger_url, tmp_path)
    await opened.migrate()
    yield opened
    await opened.close()


async def test_migrations_apply_once_in_order(ledger_url: str, tmp_path: Path) -> None:
    first = open_ledger_store(ledger_url, tmp_path)
    applied = await first.migrate()
    assert applied[0] == "0001_ledger" and applied == sorted(applied)  # later issues add 0002_...
    assert await first.migrate() == []
    second = open_ledger_store(ledger_url, tmp_path)  # another process starting later
    assert await second.migrate() == []
    assert await second.count() == 0
    await first.close()
    await second.close()


async def test_write_then_count_and_read_back(store: LedgerStore) -> None:
    rows = [make_row(i) for i in range(25)]
    rows[3] = replace(rows[3], tier=None, tags=(), ttft_ms=None, extra={"trace": "abc"}, error_class="Timeout")
    await store.write(rows)
    assert await store.count() == 25
    assert [r async for r in store.query_rows(DAY0, DAY0 + DAY, page_size=7)] == rows
    assert [r.attempt_id async for r in store.query_rows(DAY0 + 10 * HOUR + 5, DAY0 + 10 * HOUR + 8)] == [
        "req-5:0",
        "req-6:0",
        "req-7:0",
    ]


async def test_estimated_buckets_are_kept(store: LedgerStore) -> None:
    """Which usage buckets hold an estimate (migration 0004): input reported, output estimated."""
    rows = [make_row(1, usage_source="estimated", estimated_buckets="output"), make_row(2)]
    await store.write(rows)
    read = [r async for r in store.query_rows(DAY0, DAY0 + DAY)]
    assert [(r.usage_source, r.estimated_buckets) for r in read] == [("estimated", "output"), ("reported", "")]


async def test_replayed_rows_are_never_doubled(store: LedgerStore) -> None:
    await store.write([make_row(i) for i in range(10)])
    await store.write([make_row(i) for i in range(5, 15)])  # a replay overlapping the first batch
    await store.write([make_row(20), make_row(20), make_row(21)])  # a duplicate inside one batch
    assert await store.count() == 17
    [total] = await store.spend_report(DAY0, DAY0 + DAY, "team")
    assert total.attempts == 17  # rollups took only the rows actually inserted
    assert total.cost_total == D("0.000000450") * 17


async def test_money_is_exact_decimal(store: LedgerStore) -> None:
    per_token = D("0.000000150")
    rows = [make_row(i, cost_input_uncached=per_token * 3, cost_total=per_token * 3) for i in range(3)]
    big = D("12345678.123456789012")
    rows.append(make_row(9, cost_output=big, cost_total=big, saved_cost=D("0.000000000001")))
    await store.write(rows)
    stored = [r async for r in store.query_rows(DAY0, DAY0 + DAY)]
    assert [r.cost_total for r in stored] == [D("0.00000045")] * 3 + [big]
    assert all(isinstance(r.cost_total, Decimal) for r in stored)
    [total] = await store.spend_report(DAY0, DAY0 + DAY, "key")
    assert total.cost_total == D("0.00000135") + big
    assert total.saved_cost == D("1e-12")


def _random_rows(count: int, seed: int = 7) -> list[LedgerRow]:
    rng = random.Random(seed)
    rows = []
    for n in range(count):
        status = rng.choice(["ok", "ok", "ok", "error", "cancelled"])
        usage = {
            "input_uncached": rng.randint(0, 5000),
            "output": rng.randint(0, 900),
            "input_cache_read": rng.randint(0, 99),
        }
        rows.append(
            make_row(
                n,
                attempt_id=f"req-{n // 2}:{n % 2}",
                request_id=f"req-{n // 2}",
                attempt_index=n % 2,
                ts=DAY0 + rng.uniform(0, 3 * DAY),
                key_id=rng.choice(["k1", "k2", "k3"]),
                team=rng.choice(["a", "b", ""]),
                tags=tuple(rng.sample(["x", "y", "z"], rng.randint(0, 2))),
                tier=rng.choice([1, 2, None]),
                deployment=rng.choice(["d1", "d2"]),
                model=rng.choice(["m1", "m2"]),
                status=status,
                is_final=n % 2 == 1 or rng.random() < 0.3,
                cache_result=rng.choice(["none", "miss", "exact"]),
                latency_ms=rng.lognormvariate(5, 1),
                ttft_ms=rng.choice([None, rng.uniform(5, 500)]),
                cost_output=D(rng.randint(0, 10**9)) / D(10**12),
                cost_total=D(rng.randint(0, 10**9)) / D(10**12),
                saved_cost=D(rng.randint(0, 10**6)) / D(10**12),
                price_unknown=rng.random() < 0.1,
                **usage,
            )
        )
    return rows


def _expected(rows: list[LedgerRow], lo: float, hi: float, group_by: GroupBy) -> dict[str, dict[str, Any]]:
    """Aggregates computed straight from raw rows, independently of the rollup code (the latency and TTFT
    histograms over the window widened to whole hours, as the timing cells are kept)."""
    out: dict[str, dict[str, Any]] = {}
    hour_lo, hour_hi = math.floor(lo / HOUR) * HOUR, math.ceil(hi / HOUR) * HOUR  # timings: whole hours
    for row in rows:
        if not hour_lo <= row.ts < hour_hi:
            continue
        values = {
            "key": [row.key_id],
            "team": [row.team or "(none)"],
            "tag": list(dict.fromkeys(row.tags)) or ["(none)"],
            "model": [row.model],
            "tier": ["(none)" if row.tier is None else str(row.tier)],
            "deployment": [row.deployment],
        }[group_by]
        for value in values:
            agg = out.setdefault(
                value,
                {
                    "attempts": 0,
                    "requests": 0,
                    "successful": 0,
                    "errors": 0,
                    "hits": 0,
                    "input": 0,
                    "cost": D(0),
                    "saved": D(0),
                    "lat": {},
                    "ttft": {},
                },
            )
            agg["lat"][latency_bin(row.latency_ms)] = agg["lat"].get(latency_bin(row.latency_ms), 0) + 1
            if row.ttft_ms is not None:
                agg["ttft"][latency_bin(row.ttft_ms)] = agg["ttft"].get(latency_bin(row.ttft_ms), 0) + 1
            if not lo <= row.ts < hi:
                continue
            agg["in_window"] = True
            agg["attempts"] += 1
            agg["requests"] += row.attempt_index == 0
            agg["successful"] += row.is_final and row.status == "ok"
            agg["errors"] += row.status != "ok"
            agg["hits"] += row.cache_result == "exact"
            agg["input"] += row.input_uncached
            agg["cost"] += row.cost_total
            agg["saved"] += row.saved_cost
    return {
        group: {k: v for k, v in agg.items() if k != "in_window"} for group, agg in out.items() if agg.get("in_window")
    }


def _actual(rows: list[ReportRow]) -> dict[str, dict[str, Any]]:
    return {
        r.group: {
            "attempts": r.attempts,
            "requests": r.requests,
            "successful": r.successful,
            "errors": r.error_attempts,
            "hits": r.cache_hits,
            "input": r.tokens["input_uncached"],
            "cost": r.cost_total,
            "saved": r.saved_cost,
            "lat": dict(r.latency_histogram),
            "ttft": dict(r.ttft_histogram),
        }
        for r in rows
    }


async def test_rollups_equal_raw_aggregates(store: LedgerStore) -> None:
    rows = _random_rows(400)
    for start in range(0, len(rows), 128):
        await store.write(rows[start : start + 128])
    windows = [
        (DAY0, DAY0 + 3 * DAY),  # whole days
        (DAY0 + 1 * HOUR + 23 * 60, DAY0 + 2 * DAY + 5 * HOUR + 7 * 60),  # minutes, hours and a day
        (DAY0 + 7 * HOUR, DAY0 + 9 * HOUR + 60),
    ]
    for lo, hi in windows:
        for group_by in GROUP_BY_CHOICES:
            assert _actual(await store.spend_report(lo, hi, group_by)) == _expected(rows, lo, hi, group_by), (
                lo,
                hi,
                group_by,
            )


async def test_report_numbers_on_a_hand_built_ledger(store: LedgerStore) -> None:
    ok, err = {"status": "ok"}, {"status": "error", "error_class": "UpstreamTimeout"}
    rows = [
        make_row(1, tier=1, cost_total=D("0.001"), latency_ms=100, ttft_ms=20),
        # a billed failure, then a retry that answered
        make_row(2, tier=2, deployment="big", is_final=False, cost_total=D("0.002"), latency_ms=400, **err),
        make_row(
            2,
            attempt_id="req-2:1",
            attempt_index=1,
            tier=2,
            deployment="big",
            cost_total=D("0.010"),
            latency_ms=300,
            **ok,
        ),
        make_row(3, tier=1, cache_result="exact", cost_total=D(0), saved_cost=D("0.001"), latency_ms=5, ttft_ms=5),
        # every attempt failed: a request without a successful answer
        make_row(4, tier=2, is_final=False, cost_total=D(0), latency_ms=1000, **err),
        make_row(4, attempt_id="req-4:1", attempt_index=1, tier=2, cost_total=D(0), latency_ms=1000, **err),
    ]
    await store.write(rows)
    since, until = datetime.fromtimestamp(DAY0, UTC), datetime.fromtimestamp(DAY0 + DAY, UTC)
    report = await build_spend_report(store, since=since, until=until, group_by="tier")
    total = report.total
    assert (total.requests, total.attempts, total.successful, total.error_attempts) == (4, 6, 3, 3)
    assert total.spend == D("0.013")
    assert total.cost_per_1k_requests == D("3.25")
    assert total.cost_per_successful_request == D("0.004333333333")  # failed attempts in the numerator
    assert (total.cache_hits, total.saved_cost) == (1, D("0.001"))
    tiers = {line.group: line for line in report.lines}
    assert [line.group for line in report.lines] == ["2", "1"]  # by spend
    assert (tiers["1"].request_share, tiers["2"].request_share) == (0.5, 0.5)
    assert tiers["2"].spend_share == pytest.approx(12 / 13)
    assert tiers["2"].cost_per_successful_request == D("0.012")
    assert tiers["1"].cost_per_1k_requests == D("0.5")
    # percentiles from histograms (4 bins per doubling): within 9.1% of the nearest-rank value
    assert total.latency_ms.p50 == pytest.approx(300, rel=0.091)
    assert total.latency_ms.p99 == pytest.approx(1000, rel=0.091)
    assert tiers["1"].ttft_ms.p95 == pytest.approx(20, rel=0.091)


async def test_reprice_updates_rows_rollups_and_audit(store: LedgerStore) -> None:
    old = {"cost_input_uncached": D("0.000001"), "cost_total": D("0.000001"), "price_version": "builtin:old"}
    rows = [make_row(i, input_uncached=1000, output=200, **old) for i in range(5)]
    rows.append(make_row(5, model="no-such-model", deployment="x", **old))  # no price today: left alone
    rows.append(make_row(6, cache_result="exact", cost_total=D(0), saved_cost=D("0.5")))  # cache hit: skipped
    await store.write(rows)
    catalog = load_builtin_catalog()
    book = PriceBook([], catalog, UnknownPricePolicy.ALERT)
    result = await reprice_ledger(store, book, catalog, since=DAY0, until=DAY0 + DAY, actor="alice")
    price = catalog.lookup("gpt-4o-mini")
    assert price is not None
    expected = price_usage(Usage(input_uncached=1000, output=200), price).total.usd  # 0.00015 + 0.00012
    assert expected == D("0.00027")
    assert (result.rows_scanned, result.rows_changed, result.rows_unpriced, result.rows_skipped) == (7, 5, 1, 1)
    assert result.old_total == D("0.000006") and result.new_total == expected * 5 + D("0.000001")
    stored = {r.attempt_id: r async for r in store.query_rows(DAY0, DAY0 + DAY)}
    assert stored["req-0:0"].cost_total == expected and stored["req-0:0"].cost_output == D("0.00012")
    assert stored["req-0:0"].price_version == price.version
    assert stored["req-5:0"].cost_total == D("0.000001")
    [by_key] = await store.spend_report(DAY0, DAY0 + DAY, "key")
    assert by_key.cost_total == result.new_total  # rollups moved with the rows
    [entry] = await store.audit_log()
    assert (entry.action, entry.actor, entry.rows_changed) == ("reprice", "alice", 5)
    assert (entry.old_total, entry.new_total) == (D("0.000006"), result.new_total)
    assert list(entry.price_versions["old"]) == ["builtin:old"]
    assert list(entry.price_versions["new"]) == [price.version]
    again = await reprice_ledger(store, book, catalog, since=DAY0, until=DAY0 + DAY, actor="alice")
    assert again.rows_changed == 0 and again.new_total == result.new_total
    assert len(await store.audit_log()) == 2


async def test_reprice_moves_the_routing_savings_of_tiered_routes(store: LedgerStore) -> None:
    """A routed request: a cheap answer the cascade rejected (overhead), then the answering row,
    whose counterfactual is its usage on the premium deployment. New prices move both rows' costs
    and savings, and the rollups with them; an untiered row's savings stay 0."""
    old = {"price_version": "config:old", "model_group": "auto", "route_policy": "cascade"}
    rejected = make_row(
        2,
        deployment="cheap",
        model="cheap-model",
        input_uncached=1000,
        output=100,
        is_final=False,
        cost_total=D("0.0003"),
        routing_savings=D("-0.0003"),
        extra={"counterfactual": "none"},
        **old,
    )
    answer = make_row(
        2,
        deployment="cheap",
        model="cheap-model",
        input_uncached=1000,
        output=100,
        attempt_id="req-2:1",
        attempt_index=1,
        cost_total=D("0.0003"),
        routing_savings=D("0.0027"),
        extra={"counterfactual": "premium"},
        **old,
    )
    untiered = make_row(3, deployment="cheap", model="cheap-model", input_uncached=1000, output=100, **old)
    await store.write([rejected, answer, untiered])
    prices = {"cheap": ("0.10", "1.00"), "premium": ("5", "20")}  # USD per million tokens, today
    deployments = [
        DeploymentConfig(name=name, provider="fake", model=f"{name}-model", price={"input": i, "output": o})
        for name, (i, o) in prices.items()
    ]
    catalog = load_builtin_catalog()
    book = PriceBook(deployments, catalog, UnknownPricePolicy.ALERT)
    await reprice_ledger(store, book, catalog, since=DAY0, until=DAY0 + DAY, actor="alice")
    stored = {r.attempt_id: r async for r in store.query_rows(DAY0, DAY0 + DAY)}
    cheap = D("0.0002")  # 1000 x 0.10 + 100 x 1.00 per million
    premium = D("0.007")  # 1000 x 5 + 100 x 20 per million
    assert stored["req-2:0"].cost_total == cheap and stored["req-2:0"].routing_savings == -cheap
    assert stored["req-2:1"].cost_total == cheap and stored["req-2:1"].routing_savings == premium - cheap
    assert stored["req-3:0"].cost_total == cheap and stored["req-3:0"].routing_savings == 0
    [total] = await store.spend_report(DAY0, DAY0 + DAY, "key")
    assert total.routing_savings == premium - 2 * cheap  # all-premium 0.007 vs 0.0004 spent


async def test_prune_drops_old_rows_and_minute_rollups_only(store: LedgerStore) -> None:
    await store.write([make_row(i, ts=DAY0 + i * 60) for i in range(30)])
    assert await store.prune(DAY0 + 20 * 60, batch_size=7) == 20
    assert await store.count() == 10
    [day] = await store.spend_report(DAY0, DAY0 + DAY, "key")  # day rollups are kept
    assert day.attempts == 30
    [minutes] = await store.spend_report(DAY0, DAY0 + 40 * 60, "key")  # minute rollups before the cut are gone
    assert minutes.attempts == 10


async def test_health_and_empty_report(store: LedgerStore) -> None:
    assert await store.health() is True
    assert await store.spend_report(DAY0, DAY0 + DAY, "model") == []
    assert await store.spend_report(DAY0, DAY0, "model") == []


def _without_histograms(aggregates: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {group: {k: v for k, v in agg.items() if k not in ("lat", "ttft")} for group, agg in aggregates.items()}


async def test_bucket_report_is_the_hourly_series_of_the_raw_rows(store: LedgerStore) -> None:
    rows = _random_rows(300, seed=11)
    await store.write(rows)
    lo, hi = DAY0 + 5 * HOUR + 17, DAY0 + 2 * DAY  # the 05:00 bucket starts before `lo`: left out
    series = await store.bucket_report(lo, hi, "tier", 3600)
    assert [(b.start, b.row.group) for b in series] == sorted((b.start, b.row.group) for b in series)
    assert {b.period_s for b in series} == {3600} and all(b.start % 3600 == 0 for b in series)
    actual = {(b.start, b.row.group): _without_histograms(_actual([b.row]))[b.row.group] for b in series}
    expected = {
        (int(start), group): agg
        for start in range(int(DAY0 + 6 * HOUR), int(hi), 3600)
        for group, agg in _without_histograms(_expected(rows, start, start + HOUR, "tier")).items()
    }
    assert actual == expected and len(actual) > 40


async def test_bucket_report_keeps_hours_after_prune_and_rejects_other_periods(store: LedgerStore) -> None:
    await store.write([make_row(i, ts=DAY0 + i * 60) for i in range(90)])
    await store.prune(DAY0 + DAY)
    hours = await store.bucket_report(DAY0, DAY0 + DAY, "key", 3600)
    assert [(b.start - DAY0, b.row.attempts) for b in hours] == [(0, 60), (3600, 30)]
    assert await store.bucket_report(DAY0, DAY0 + DAY, "key", 60) == []  # minute cells were pruned
    [day] = await store.bucket_report(DAY0, DAY0 + DAY, "key", 86400)
    assert day.row.requests == 90
    with pytest.raises(ValueError, match="rollup period"):
        await store.bucket_report(DAY0, DAY0 + DAY, "key", 600)


async def test_bucket_spend_sums_the_bucket_report_per_label_in_the_store(store: LedgerStore) -> None:
    rows = _random_rows(300, seed=13)
    await store.write(rows)
    lo, hi = DAY0 + 5 * HOUR + 17, DAY0 + 2 * DAY
    cells = await store.bucket_report(lo, hi, "key", 3600)

    def expected(label_of: dict[str, str | None], counted: set[str] | None) -> dict[tuple[int, str | None], Decimal]:
        sums: dict[tuple[int, str | None], Decimal] = {}
        for cell in cells:
            if counted is None or cell.row.group in counted:
                key = (cell.start, label_of.get(cell.row.group))
                sums[key] = sums.get(key, Decimal(0)) + cell.row.cost_total
        return sums

    labels = {"k1": "first", "k2": "second"}
    every = await store.bucket_spend(lo, hi, "key", 3600, labels)  # k3 (and any other key): None
    assert {(start, label): spend for start, label, spend in every} == expected(dict(labels), None)
    assert [start for start, _, _ in every] == sorted(start for start, _, _ in every) and len(every) > 40
    only_k1 = await store.bucket_spend(lo, hi, "key", 3600, {"k1": "first"}, included=[])
    assert {(s, label): spend for s, label, spend in only_k1} == expected({"k1": "first"}, {"k1"})
    k1_and_k3 = await store.bucket_spend(lo, hi, "key", 3600, {"k1": "first"}, included=["k3"])
    assert {(s, label): spend for s, label, spend in k1_and_k3} == expected({"k1": "first"}, {"k1", "k3"})
    assert await store.bucket_spend(lo, hi, "key", 3600, {}, included=[]) == []


async def test_bucket_percentiles_are_the_raw_rows_nearest_rank_bins(store: LedgerStore) -> None:
    rows = _random_rows(300, seed=17)
    await store.write(rows)
    lo, hi = DAY0 + 5 * HOUR + 17, DAY0 + 2 * DAY
    for q in (0.5, 0.95, 0.99):
        found = await store.bucket_percentiles(lo, hi, "model", 3600, q)
        expected = {}
        for start in range(int(DAY0 + 6 * HOUR), int(hi), 3600):
            for group, agg in _expected(rows, start, start + HOUR, "model").items():
                for metric, histogram in (("latency", agg["lat"]), ("ttft", agg["ttft"])):
                    if histogram:
                        expected[(start, group, metric)] = percentile(histogram, q)
        assert {(s, g, m): bin_midpoint(b) for s, g, m, b in found} == expected and len(expected) > 40
        assert [(s, g) for s, g, _, _ in found] == sorted((s, g) for s, g, _, _ in found)


async def test_cells_count_cache_outcomes_and_the_generation_rate(store: LedgerStore) -> None:
    """Issue 21: hits by kind, misses and bypasses by reason (once per request), and tokens/s as the
    output tokens of rows that measured a rate over the time they spent generating them."""
    rows = [
        make_row(1, cache_result="exact", tokens_per_s=None, output=0),
        make_row(2, cache_result="semantic", tokens_per_s=None, output=0),
        make_row(3, cache_result="coalesced", tokens_per_s=None, output=0),
        make_row(4, extra={"cache": "miss"}, output=100, tokens_per_s=50.0),  # 2 s generating
        make_row(5, output=300, output_reasoning=100, tokens_per_s=200.0),  # a retried request's first row
        make_row(5, extra={"cache": "bypass; sampled"}, attempt_id="req-5:1", attempt_index=1, output=0),
        make_row(7, extra={"cache": "bypass; media"}, status="error", tokens_per_s=None, output=0),
        make_row(8, extra={"cache": "bypass; something-new"}, output=0, tokens_per_s=None),
        make_row(9, extra={"cache": "bypass; disabled"}, status="refused", tokens_per_s=None, output=0),
    ]
    await store.write(rows)
    for lo, hi in ((DAY0, DAY0 + DAY), (DAY0 + 10 * HOUR, DAY0 + 10 * HOUR + 60)):  # a day cell, minute cells
        [total] = await store.spend_report(lo, hi, "team")
        assert dict(total.cache) == {
            "hits_exact": 1, "hits_semantic": 1, "hits_coalesced": 1, "cache_misses": 1,
            "bypass_disabled": 0, "bypass_sampled": 1, "bypass_media": 1, "bypass_other": 1,
        }  # fmt: skip
        assert (total.generated_tokens, total.generation_us) == (500, 4_000_000)
    [(start, group, timings)] = await store.bucket_timings(DAY0, DAY0 + DAY, "deployment", 3600)
    assert (start, group, timings.tokens_per_s) == (DAY0 + 10 * HOUR, "small", 125.0)
    assert sum(timings.latency.values()) == 8  # every row but the refusal
