"""`margin report --format focus`: FinOps FOCUS CSV with the ledger's exact costs. The rows' costs sum
to exactly what `margin report --format json` totals; each row is one UTC day and charge; an attempt
whose price was unknown is never folded in as zero but gets a row that says so."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner
from tests.support.ledger_rows import make_row
from tests.unit.ledger.test_ledger_cli import _config, _seed

from margin.cli.report import report
from margin.ledger.report_focus import COLUMNS

DAY_ONE = datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp()
DAY_TWO = datetime(2026, 12, 1, 9, tzinfo=UTC).timestamp()
WINDOW = ["--since", "2026-11-29", "--until", "2026-12-03"]


def rows_seeded(tmp_path: Path) -> None:
    _seed(tmp_path, [
        make_row(1, ts=DAY_ONE, cost_total=Decimal("0.000123456789"), output=7, saved_cost=Decimal("0.01")),
        make_row(2, ts=DAY_ONE + 60, cost_total=Decimal("0.1")),
        replace(make_row(2, ts=DAY_ONE + 61, cost_total=Decimal("0.2"), deployment="big", model="gpt-4o"),
                attempt_id="req-2:1", attempt_index=1),  # a failover attempt of request 2
        make_row(3, ts=DAY_TWO, team="team-b", key_id="key-b", tags=("feature:search", "env:prod"),
                 cost_total=Decimal("1.5")),
        make_row(4, ts=DAY_TWO, cost_total=Decimal(0), cost_input_uncached=Decimal(0), price_unknown=True,
                 price_basis="unknown"),
    ])  # fmt: skip


def focus_rows(tmp_path: Path) -> list[dict[str, str]]:
    result = CliRunner().invoke(report, ["--config", str(_config(tmp_path)), "--format", "focus", *WINDOW])
    assert result.exit_code == 0, result.output
    reader = csv.DictReader(io.StringIO(result.output))
    assert tuple(reader.fieldnames or ()) == COLUMNS
    return list(reader)


def test_focus_costs_sum_exactly_to_the_report_total(tmp_path: Path) -> None:
    rows_seeded(tmp_path)
    rows = focus_rows(tmp_path)
    summary = CliRunner().invoke(report, ["--config", str(_config(tmp_path)), "--format", "json", *WINDOW])
    total = Decimal(str(json.loads(summary.output)["total"]["spend_usd"]))
    assert sum(Decimal(r["BilledCost"]) for r in rows) == total == Decimal("1.800123456789")
    assert all(r["BilledCost"] == r["EffectiveCost"] == r["ListCost"] for r in rows)


def test_one_row_per_day_and_charge_with_focus_values(tmp_path: Path) -> None:
    rows_seeded(tmp_path)
    rows = focus_rows(tmp_path)
    first = {(r["ChargePeriodStart"], r["ResourceId"], r["SubAccountId"]): r for r in rows}
    small = first[("2026-11-30T00:00:00Z", "small", "team-a")]
    assert small["BilledCost"] == "0.100123456789" and small["x_Requests"] == "2" and small["x_Attempts"] == "2"
    assert (small["ChargePeriodEnd"], small["BillingPeriodStart"], small["BillingPeriodEnd"]) == (
        "2026-12-01T00:00:00Z", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z",
    )  # fmt: skip
    assert (small["BillingCurrency"], small["ChargeCategory"], small["ConsumedUnit"]) == ("USD", "Usage", "Tokens")
    assert small["x_CacheSavedCost"] == "0.01" and small["ConsumedQuantity"] == "13"  # 3+3 input, 7 output
    failover = first[("2026-11-30T00:00:00Z", "big", "team-a")]
    assert (failover["BilledCost"], failover["x_Requests"], failover["x_Attempts"]) == ("0.2", "0", "1")
    tagged = first[("2026-12-01T00:00:00Z", "small", "team-b")]
    assert json.loads(tagged["Tags"]) == {
        "env": "prod", "feature": "search", "margin:key_id": "key-b", "margin:model_group": "chat", "margin:user": "u1",
    }  # fmt: skip
    assert len(rows) == 4


def test_unknown_prices_get_their_own_row_never_a_silent_zero(tmp_path: Path) -> None:
    rows_seeded(tmp_path)
    unknown = [r for r in focus_rows(tmp_path) if r["x_PriceUnknownAttempts"] != "0"]
    assert len(unknown) == 1 and unknown[0]["x_PriceUnknownAttempts"] == "1"
    assert "price unknown" in unknown[0]["ChargeDescription"] and "margin reprice" in unknown[0]["ChargeDescription"]
