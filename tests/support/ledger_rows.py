"""A sample ledger row, for every test that needs rows: vary it with keyword changes."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from margin.storage.ledger_row import LedgerRow


def make_row(n: int, *, ts: float | None = None, **changes: Any) -> LedgerRow:
    row = LedgerRow(
        attempt_id=f"req-{n}:0",
        request_id=f"req-{n}",
        attempt_index=0,
        ts=time.time() if ts is None else ts,
        endpoint="chat",
        key_id="key-a",
        org="org",
        team="team-a",
        user="u1",
        tags=("feature-x",),
        endpoint_class="interactive",
        model_group="chat",
        route_policy="static",
        tier=1,
        deployment="small",
        model="gpt-4o-mini",
        fallback_index=0,
        is_final=True,
        status="ok",
        error_class=None,
        latency_ms=120.0,
        ttft_ms=30.0,
        tokens_per_s=80.0,
        input_uncached=3,
        cost_input_uncached=Decimal("0.00000045"),
        cost_total=Decimal("0.00000045"),
    )
    return replace(row, **changes)


def stored_row(db: Path, request_id: str, timeout: float = 10) -> sqlite3.Row:
    """The first ledger row of `request_id` in a gateway's SQLite ledger at `db`, once the writer
    has stored it (rows are written off the request path); fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as conn:
                conn.row_factory = sqlite3.Row
                row: sqlite3.Row | None = conn.execute(
                    "SELECT * FROM ledger_attempts WHERE request_id = ?", (request_id,)
                ).fetchone()
            if row is not None:
                return row
        time.sleep(0.05)
    raise AssertionError(f"no ledger row for {request_id}")
