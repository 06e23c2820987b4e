"""metering.usage_fill: a reported figure is never replaced by an estimate (issue 15 item 2)."""

from __future__ import annotations

import pytest

from margin.metering.usage_fill import fill_unreported, in_progress
from margin.types import Usage

ESTIMATE = Usage(input_uncached=20, output=14, source="estimated")


def test_nothing_reported_bills_the_estimate_and_names_its_buckets() -> None:
    filled = fill_unreported(None, ESTIMATE)
    assert (filled.input_uncached, filled.output) == (20, 14)
    assert filled.estimated_buckets == ("input_uncached", "output") and filled.source == "estimated"


def test_a_final_report_stands_whatever_the_estimate_says() -> None:
    report = Usage(input_uncached=1200, output=3)
    assert fill_unreported(report, ESTIMATE) is report


def test_open_buckets_take_the_larger_of_the_floor_and_the_estimate() -> None:
    started = in_progress(Usage(input_uncached=1500, input_cache_write=2500, input_cache_read=5000, output=1))
    assert started.estimated_buckets == ("output", "output_reasoning", "output_audio")
    filled = fill_unreported(started, ESTIMATE)
    # The input figures are the upstream's, never the 20-token estimate; the output is raised to 14.
    assert (filled.input_uncached, filled.input_cache_write, filled.input_cache_read) == (1500, 2500, 5000)
    assert filled.output == 14 and filled.source == "estimated"
    small = fill_unreported(started, Usage(input_uncached=20, output=0, source="estimated"))
    assert small.output == 1  # an estimate never lowers what was reported


def test_a_wholly_estimated_usage_without_names_reads_as_prompt_and_answer() -> None:
    assert Usage(source="estimated").estimated == ("input_uncached", "output")
    assert Usage().estimated == ()


def test_unknown_bucket_names_are_refused() -> None:
    with pytest.raises(ValueError, match="not usage buckets"):
        in_progress(Usage(), ("outputs",))


def test_the_usage_buckets_are_usages_fields_a_rows_token_columns_and_a_costs_amounts() -> None:
    from dataclasses import fields

    from margin.storage.ledger_row import COST_COLUMNS, USAGE_COLUMNS, LedgerRow
    from margin.types import COST_BUCKETS, USAGE_BUCKETS, Cost

    assert tuple(f.name for f in fields(Usage) if f.type == "int") == USAGE_BUCKETS
    assert USAGE_COLUMNS == USAGE_BUCKETS
    row_fields = {f.name for f in fields(LedgerRow)}
    assert set(USAGE_COLUMNS) <= row_fields and set(COST_COLUMNS) <= row_fields
    assert tuple(f.name for f in fields(Cost) if f.type == "Decimal") == COST_BUCKETS
