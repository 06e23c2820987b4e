"""row_to_json's fast path (orjson, issue 27) writes what the standard library wrote: the same
object back for every row, non-ASCII text unescaped, and the stdlib's NaN kept where orjson would
write null."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from decimal import Decimal

from tests.support.ledger_rows import make_row

from margin.ledger.spill import row_from_json, row_to_json


def stdlib_json(row: object) -> str:
    record = {k: str(v) if isinstance(v, Decimal) else list(v) if isinstance(v, tuple) else v
              for k, v in asdict(row).items()}  # type: ignore[call-overload]  # fmt: skip
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def test_the_fast_path_parses_to_what_the_stdlib_wrote() -> None:
    row = make_row(7, user="Zoë 用户", extra={"overhead_ms": "0.412", "route": "tier=1"}, tokens_per_s=1e-7,
                   cost_output=Decimal("1.5E-7"), tags=("a", "b"))  # fmt: skip
    line = row_to_json(row)
    assert json.loads(line) == json.loads(stdlib_json(row))
    assert "Zoë 用户" in line
    assert row_from_json(line) == row


def test_a_non_finite_float_keeps_the_stdlib_spelling() -> None:
    row = make_row(8, tokens_per_s=math.inf, latency_ms=math.nan)
    line = row_to_json(row)
    assert line == stdlib_json(row)
    back = row_from_json(line)
    assert back.tokens_per_s == math.inf and math.isnan(back.latency_ms)
