"""Sustained ledger throughput: rows/s into SQLite and PostgreSQL, rollups included.

Two paths per backend: `store.write` in batches of --batch rows (the store alone), and the whole
LedgerWriter (submit -> buffer -> batched writes) with a steady producer. Rows look like production:
a handful of keys, teams, tags, models and tiers, timestamps advancing in real time, so the
minute/hour/day rollup cells are shared the way a live gateway shares them.

    python bench/ledger.py [--rows 20000] [--batch 500] [--postgres-url URL]

Without --postgres-url a throwaway server is started (as the tests do) when PostgreSQL is installed.
Target (issue 3): >= 2,000 rows/s on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from margin.ledger.spill import SpillFile
from margin.ledger.writer import LedgerWriter
from margin.storage import LedgerStore, open_ledger_store
from margin.storage.ledger_row import LedgerRow

TARGET_SQLITE_ROWS_PER_S = 2000


def make_rows(count: int, first: int, rng: random.Random) -> list[LedgerRow]:
    now = time.time()
    rows = []
    for n in range(first, first + count):
        tokens_in, tokens_out = rng.randint(50, 4000), rng.randint(10, 800)
        cost = (Decimal(tokens_in) * Decimal("0.15") + Decimal(tokens_out) * Decimal("0.6")).scaleb(-6)
        rows.append(
            LedgerRow(
                attempt_id=f"bench-{n}:0",
                request_id=f"bench-{n}",
                attempt_index=0,
                ts=now,
                endpoint="chat",
                key_id=f"key-{n % 20}",
                org="org",
                team=f"team-{n % 5}",
                user=f"user-{n % 50}",
                tags=(f"feature-{n % 4}",),
                endpoint_class="interactive",
                model_group="chat",
                route_policy="static",
                tier=n % 3,
                deployment=f"dep-{n % 3}",
                model=("gpt-4o-mini", "gpt-4o", "local")[n % 3],
                fallback_index=0,
                is_final=True,
                status="ok",
                error_class=None,
                latency_ms=rng.lognormvariate(6, 0.5),
                ttft_ms=rng.lognormvariate(4.5, 0.5),
                tokens_per_s=60.0,
                input_uncached=tokens_in,
                output=tokens_out,
                cost_input_uncached=cost,
                cost_total=cost,
                price_version="builtin:bench",
            )
        )
    return rows


async def store_rate(store: LedgerStore, total: int, batch: int) -> float:
    rng = random.Random(1)
    batches = [make_rows(batch, first, rng) for first in range(0, total, batch)]
    started = time.perf_counter()
    for rows in batches:
        await store.write(rows)
    return total / (time.perf_counter() - started)


async def writer_rate(store: LedgerStore, total: int, batch: int, spill_dir: Path) -> float:
    rng = random.Random(2)
    writer = LedgerWriter(store, SpillFile(spill_dir / "spill.jsonl"), batch_size=batch, max_queue=total + 1)
    await writer.start()
    chunk = 50  # rows per submit, as concurrent requests finish
    chunks = [make_rows(chunk, first, rng) for first in range(10**7, 10**7 + total, chunk)]
    started = time.perf_counter()
    for rows in chunks:
        writer.submit(rows)
        await asyncio.sleep(0)
    await writer.stop()
    elapsed = time.perf_counter() - started
    assert writer.spilled_rows == 0, "the store failed during the benchmark"
    return total / elapsed


async def measure(url: str, data_dir: Path, total: int, batch: int) -> tuple[float, float]:
    store = open_ledger_store(url, data_dir)
    await store.migrate()
    try:
        direct = await store_rate(store, total, batch)
        through_writer = await writer_rate(store, total, batch, data_dir)
        assert await store.count() == 2 * total
    finally:
        await store.close()
    return direct, through_writer


@contextmanager
def throwaway_postgres() -> Iterator[str | None]:
    from tests.support.postgres import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        yield None
        return
    server = PostgresServer(bin_dir, Path(tempfile.mkdtemp(prefix="margin-pg-bench-")))
    try:
        server.init()
        server.start()
        yield server.create_database("bench")
    finally:
        with contextlib.suppress(RuntimeError):  # never started
            server.stop("immediate")
        shutil.rmtree(server.root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--postgres-url", default=os.environ.get("MARGIN_BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    results: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="margin-ledger-bench-") as tmp:
        sqlite = asyncio.run(measure(f"sqlite:///{tmp}/ledger.db", Path(tmp), args.rows, args.batch))
        results.append(("sqlite (WAL, synchronous=NORMAL)", *sqlite))
        with throwaway_postgres() if args.postgres_url is None else _given(args.postgres_url) as url:
            if url is not None:
                results.append(("postgresql", *asyncio.run(measure(url, Path(tmp), args.rows, args.batch))))
    print(f"ledger throughput, {args.rows} rows per path, batches of {args.batch}, rollups included")
    print(f"{'backend':34} {'store.write rows/s':>19} {'LedgerWriter rows/s':>20}")
    for name, direct, through_writer in results:
        print(f"{name:34} {direct:19,.0f} {through_writer:20,.0f}")
    if len(results) == 1:
        print("postgresql: skipped (not installed and no --postgres-url)")
    ratio = min(sqlite) / TARGET_SQLITE_ROWS_PER_S
    verdict = "meets" if ratio >= 1 else "MISSES"
    print(f"sqlite {verdict} the {TARGET_SQLITE_ROWS_PER_S:,} rows/s target ({ratio:.1f}x)")


@contextmanager
def _given(url: str) -> Iterator[str | None]:
    yield url


if __name__ == "__main__":
    main()
