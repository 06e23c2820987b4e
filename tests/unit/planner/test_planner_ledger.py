"""--from-ledger: hourly aggregates -> profile and summary (the store is read by margin.ledger.hourly_usage)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from planner_helpers import profile

from margin.ledger.hourly_usage import HourlyUsage
from margin.planner import profile_from_ledger, summarize_ledger
from margin.planner.ledger_input import LedgerError

START = datetime(2026, 11, 1, tzinfo=UTC)
HYBRID: dict[str, Any] = {
    "cache_hit_rate": 0.5,
    "premium_api": "openai/gpt-4.1",
    "tiers": [
        {"name": "small", "option": "self_hosted:llama-3.1-8b", "share": 0.5, "cost_ranks": [1]},
        {"name": "premium", "option": "api:openai/gpt-4.1", "share": 0.5},
    ],
}


def _rows(mystery: bool = False) -> list[HourlyUsage]:
    """Two days on cost_ranks 1 and 2 in alternate hours (3x busier 09:00-17:00); optionally a burst on rank 7."""
    rows = []
    for day in range(2):
        for hour in range(24):
            n = 300 if 9 <= hour < 17 else 100
            rank = "1" if hour % 2 else "2"
            rows.append(
                HourlyUsage(START + timedelta(days=day, hours=hour), rank, n, n * 400, n * 200, n // 5, Decimal("0.25"))
            )
    if mystery:
        rows.append(HourlyUsage(START, "7", 1000, 10**6, 10**6, 0, Decimal(0)))
    return rows


def test_profile_from_ledger_measures_volume_shape_and_mix() -> None:
    base = profile(hybrid=HYBRID)
    measured = profile_from_ledger(_rows(), base)
    # per day: 8 busy hours x 300 + 16 quiet hours x 100 = 4000 requests
    assert measured.requests_per_day == pytest.approx(4000)
    assert measured.input_tokens.mean == pytest.approx(400)
    assert measured.input_tokens.p95 == pytest.approx(800)  # base p95/mean ratio (1000/500) kept
    assert measured.output_tokens.mean == pytest.approx(200)
    shares = measured.hourly_shares()
    assert shares[10] == pytest.approx(3 * shares[3])
    assert measured.sla == base.sla and measured.growth == base.growth
    assert measured.hybrid is not None
    assert measured.hybrid.cache_hit_rate == pytest.approx(0.2)
    tiers = {t.name: t.share for t in measured.hybrid.tiers}
    # odd hours (rank 1 -> small) and even hours (rank 2 -> premium) each hold 4 busy + 8 quiet hours a day
    assert tiers == pytest.approx({"small": 0.5, "premium": 0.5})


def test_summary_totals_what_was_read() -> None:
    summary = summarize_ledger(_rows(), "chat")
    assert (summary.requests, summary.input_tokens, summary.output_tokens) == (8000, 3_200_000, 1_600_000)
    assert summary.cache_hits == 1600 and summary.days == pytest.approx(2.0)
    assert summary.spend.usd == Decimal("12.00")  # 48 hours x $0.25, exact
    assert (summary.first_hour, summary.last_hour) == (START, START + timedelta(days=1, hours=23))
    assert summary.model_group == "chat"


def test_unknown_cost_rank_counts_as_premium() -> None:
    measured = profile_from_ledger(_rows(mystery=True), profile(hybrid=HYBRID))
    assert measured.hybrid is not None
    shares = {t.name: t.share for t in measured.hybrid.tiers}
    assert shares["premium"] > shares["small"]


def test_a_tier_named_by_its_rank_needs_no_cost_ranks() -> None:
    mix = {**HYBRID, "tiers": [{**HYBRID["tiers"][0], "name": "2", "cost_ranks": []}, HYBRID["tiers"][1]]}
    measured = profile_from_ledger(_rows(), profile(hybrid=mix))
    assert measured.hybrid is not None
    assert {t.name: t.share for t in measured.hybrid.tiers} == pytest.approx({"2": 0.5, "premium": 0.5})


def test_an_empty_ledger_is_an_error() -> None:
    with pytest.raises(LedgerError, match="no requests in the ledger for model group 'absent'"):
        summarize_ledger([], "absent")
    with pytest.raises(LedgerError, match="no requests"):
        profile_from_ledger([], profile())
