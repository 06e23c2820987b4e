"""Bulk seeding of a ledger for bench/dashboard.py: N rows over the last 90 days, with the rollup
cells and timing cells (latency and TTFT histograms, generation sums) margin's own writer would have
stored for them.

Rows are made one UTC day at a time; each day's rollups are computed by the writer's own function
(`margin.storage.rollups.rollup_deltas`) and inserted in bulk beside the rows: executemany in one
transaction per day on SQLite, COPY on PostgreSQL. Rollup cells never span two UTC days (minute,
hour and day buckets all nest in a day), so each day's cells are new and the result equals what
`store.write` would have built row by row, in a fraction of the time.

The mix: 8 teams, 40 keys (5 per team), 200 users, 5 tags, 6 models over 3 cost ranks, 3% errors
(a third of them retried), 1% refused by a budget, 10% exact and 3% semantic cache hits, weekday
traffic twice the weekend's.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from margin.storage import open_ledger_store
from margin.storage.ledger_ops import rollup_params
from margin.storage.ledger_row import BUDGET_REFUSED, CacheResult, LedgerRow
from margin.storage.ledger_schema import (
    ATTEMPTS_TABLE,
    COLUMN_NAMES,
    ROLLUP_TABLE,
    money_text,
    quantize_money,
    row_values,
)
from margin.storage.ledger_sql import ROLLUP_KEY
from margin.storage.rollups import DAY, ROLLUP_INT_COLUMNS, ROLLUP_MONEY_COLUMNS, rollup_deltas
from margin.storage.timing import BIN_COLUMNS, TIMING_TABLE, TOTAL_COLUMNS, dense_params

MODELS = (("small", 1), ("small-2", 1), ("mid", 2), ("mid-2", 2), ("large", 3), ("large-2", 3))
SPAN_DAYS = 90
ROLLUP_COLUMNS = (*ROLLUP_KEY, *ROLLUP_INT_COLUMNS, *ROLLUP_MONEY_COLUMNS)
TIMING_COLUMNS = (*ROLLUP_KEY, *TOTAL_COLUMNS, *BIN_COLUMNS)


def request_rows(n: int, ts: float, rng: random.Random) -> list[LedgerRow]:
    """One request's rows: usually one attempt; an error is retried once in a third of the cases."""
    model, rank = MODELS[rng.randrange(len(MODELS))]
    key = rng.randrange(40)
    tokens_in, tokens_out = rng.randint(50, 4000), rng.randint(10, 800)
    cost = (Decimal(tokens_in) * rank + Decimal(tokens_out) * rank * 4).scaleb(-6)
    draw = rng.random()
    refused, failed = draw < 0.01, 0.01 <= draw < 0.04
    hit: CacheResult = (
        "none" if refused or failed else ("exact" if draw < 0.14 else "semantic" if draw < 0.17 else "none")
    )
    common: dict[str, Any] = {
        "request_id": f"bench-{n}", "endpoint": "chat", "key_id": f"key-{key}", "org": f"org-{key % 2}",
        "team": f"team-{key % 8}", "user": f"user-{rng.randrange(200)}", "tags": (f"feature:{rng.randrange(5)}",),
        "endpoint_class": "interactive", "model_group": "chat", "route_policy": "static",
    }  # fmt: skip
    if refused:
        return [LedgerRow(attempt_id=f"bench-{n}:0", attempt_index=0, ts=ts, tier=None, deployment="", model="",
                          fallback_index=0, is_final=True, status="refused", error_class=BUDGET_REFUSED,
                          latency_ms=0.2, ttft_ms=None, tokens_per_s=None, **common)]  # fmt: skip
    answered = LedgerRow(
        attempt_id=f"bench-{n}:{int(failed)}", attempt_index=int(failed), ts=ts, tier=rank, deployment=model,
        model=model, fallback_index=0, is_final=True, status="ok", error_class=None,
        latency_ms=rng.lognormvariate(6.8, 0.6), ttft_ms=rng.lognormvariate(5.5, 0.5),
        tokens_per_s=rng.uniform(20, 120), input_uncached=tokens_in,
        output=tokens_out, cost_input_uncached=Decimal(0) if hit != "none" else cost,
        cost_total=Decimal(0) if hit != "none" else cost, cache_result=hit,
        saved_cost=cost if hit != "none" else Decimal(0), **common,
    )  # fmt: skip
    if not failed:
        return [answered]
    error = LedgerRow(attempt_id=f"bench-{n}:0", attempt_index=0, ts=ts - 1, tier=rank, deployment=model,
                      model=model, fallback_index=0, is_final=rng.random() < 0.67, status="error",
                      error_class="server_error", latency_ms=rng.uniform(50, 3000), ttft_ms=None,
                      tokens_per_s=None, **common)  # fmt: skip
    return [error] if error.is_final else [error, answered]


def days(rows: int, now: float, after: float = 0.0) -> Iterator[list[LedgerRow]]:
    """About `rows` rows between now - 90 days and now, a UTC day at a time, in time order; days
    that start before `after` are left out (a seeding resumed after its last committed day)."""
    start = now - SPAN_DAYS * DAY
    weights = {day: (2 if (day // DAY + 3) % 7 < 5 else 1) for day in range(int(start // DAY) * DAY, int(now), DAY)}
    per_weight = rows / sum(w * (min(d + DAY, now) - max(d, start)) / DAY for d, w in weights.items())
    for day, weight in weights.items():
        if day <= after:
            continue
        lo, hi = max(day, start), min(day + DAY, now)
        rng = random.Random(day)
        out: list[LedgerRow] = []
        for i in range(round(per_weight * weight * (hi - lo) / DAY)):
            out.extend(request_rows((day // DAY) * 10**6 + i, rng.uniform(lo + 1, hi), rng))
        yield out


def seed_sqlite(path: Path, rows: int, now: float) -> int:
    asyncio.run(_migrate(f"sqlite:///{path}", path.parent))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    stored = 0
    for chunk in days(rows, now):
        deltas, timings = rollup_deltas(chunk)
        conn.execute("BEGIN")
        conn.executemany(
            _insert(ATTEMPTS_TABLE, COLUMN_NAMES), [row_values(r, money=money_text, boolean=int) for r in chunk]
        )
        conn.executemany(_insert(ROLLUP_TABLE, ROLLUP_COLUMNS), rollup_params(deltas, money_text))
        conn.executemany(_insert(TIMING_TABLE, TIMING_COLUMNS), dense_params(timings))
        conn.execute("COMMIT")
        stored += len(chunk)
    conn.execute("ANALYZE")
    conn.close()
    return stored


def seed_postgres(url: str, rows: int, now: float) -> int:
    """Seeds the database at `url`, resuming after the last day a previous seeding committed."""
    import psycopg

    asyncio.run(_migrate(url, Path(".")))
    with psycopg.connect(url, autocommit=False) as conn:
        found = conn.execute(f"SELECT COUNT(*), MAX(ts) FROM {ATTEMPTS_TABLE}").fetchone()
        stored, last = (int(found[0]), float(found[1] or 0)) if found else (0, 0.0)
        conn.commit()
        for chunk in days(rows, now, after=last):
            deltas, timings = rollup_deltas(chunk)
            with conn.cursor() as cursor:
                _copy(cursor, ATTEMPTS_TABLE, COLUMN_NAMES,
                      (row_values(r, money=quantize_money, boolean=bool) for r in chunk))  # fmt: skip
                _copy(cursor, ROLLUP_TABLE, ROLLUP_COLUMNS, rollup_params(deltas, quantize_money))
                _copy(cursor, TIMING_TABLE, TIMING_COLUMNS, dense_params(timings))
            conn.commit()
            stored += len(chunk)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return stored


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _copy(cursor: Any, table: str, columns: tuple[str, ...], records: Any) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for record in records:
            copy.write_row(record)


async def _migrate(url: str, data_dir: Path) -> None:
    store = open_ledger_store(url, data_dir)
    await store.migrate()
    await store.close()
