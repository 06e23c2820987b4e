"""Dashboard page time against ledger size (issue 21, section 4), on SQLite and PostgreSQL.

For each size in --rows, seeds a ledger (bench/dashboard_seed.py: a realistic mix over 90 days,
rollups and timing cells bulk-inserted as margin's writer would have stored them), then times every
dashboard page (logged in) and its JSON twin through the real app in process, --repeat times each,
and the ledger's insert throughput on that ledger (`store.write`, batches of 100 rows, the writer's
path). Prints each page's p50/p95 per size, the growth of the largest size's p95 over the smallest's,
and the insert throughput ratio between sizes, all measured in this run.

    python bench/dashboard.py [--rows 10000,100000] [--repeat 40] [--backends sqlite,postgres]
    python bench/dashboard.py --rows 100000,1000000      # the issue's sizes (minutes to seed)

PostgreSQL is a throwaway server started the way the tests start one (tests/support/postgres.py),
or --postgres-url (`postgresql://.../dash{rows}`: one database per size, kept, a seeding resumed).
SQLite ledgers are kept with --keep DIR. Targets (issue 21): p95 <= 300 ms on both backends, and no
page more than 20% slower at the largest size than at the smallest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dashboard_seed import request_rows, seed_postgres, seed_sqlite

from margin.app import create_app
from margin.config import parse_config
from margin.storage import open_ledger_store
from margin.storage.memory import MemoryKeyStore

ADMIN = "sk-admin-bench-dashboard-0000000000"
CONFIG = """
data_dir: {data}
database: {{url: "{url}"}}
server: {{admin_key: env:BENCH_DASHBOARD_ADMIN_KEY}}
deployments:
  - {{name: small, provider: fake, model: small, price: {{input: "1", output: "2"}}}}
models:
  - {{name: chat, deployments: [small]}}
budgets:
  - {{scope: global, limit_usd: 100000, window: month}}
  - {{scope: "team:*", limit_usd: 5000, window: month}}
dashboard:  # the planner page replans on every view here (cache_ttl_s ~0): its worst case
  planner:
    cache_ttl_s: 0.000001
    profile:
      requests_per_day: 1000
      input_tokens: {{mean: 500, p95: 1000}}
      output_tokens: {{mean: 250, p95: 500}}
      sla: {{ttft_ms: 1000, p95_ms: 30000}}
      ops_capacity: dedicated
      candidates: {{compare_to: openai/gpt-4.1, apis: [openai/gpt-4.1], models: [llama-3.1-8b], gpus: [a10g],
                   providers: [aws], precisions: [fp16], pricing: [on_demand], managed: []}}
"""
# (page, twin): every dashboard page the app serves, with the query a user would send.
ROUND = 5  # requests per page in a row before the next page and ledger
PAGES: tuple[tuple[str, str], ...] = (
    ("/dashboard", "/admin/api/overview"),
    ("/dashboard/spend?by=team&period=day&since=30d", "/admin/api/spend?by=team&period=day&since=30d"),
    ("/dashboard/spend?by=key&period=hour&since=2d", "/admin/api/spend?by=key&period=hour&since=2d"),
    ("/dashboard/performance?since=7d", "/admin/api/performance?since=7d"),
    ("/dashboard/performance?since=24h&period=hour", "/admin/api/performance?since=24h&period=hour"),
    ("/dashboard/budgets", "/admin/api/budgets"),
    ("/dashboard/cache?since=30d", "/admin/api/cache?since=30d"),
    ("/dashboard/rollouts", "/admin/api/rollouts"),
    ("/dashboard/planner", "/admin/api/planner"),
)


async def timed(client: httpx.AsyncClient, path: str, headers: dict[str, str], repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        answer = await client.get(path, headers=headers)
        seconds.append(time.perf_counter() - start)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return seconds


@asynccontextmanager
async def logged_in(url: str, data: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The real app over the ledger at `url`, a session cookie and a bearer header."""
    os.environ["BENCH_DASHBOARD_ADMIN_KEY"] = ADMIN
    app = create_app(parse_config(CONFIG.format(data=data, url=url)), key_store=MemoryKeyStore())
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="https://gw") as client,
    ):
        form = await client.get("/dashboard/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        await client.post("/dashboard/login", data={"csrf": csrf.group(1), "admin_key": ADMIN})
        cookie = f"margin_session={client.cookies['margin_session']}"
        client.cookies.clear()
        yield client, {"session": cookie}


async def measure(ledgers: dict[int, tuple[str, Path]], args: argparse.Namespace) -> dict[str, dict[int, list[float]]]:
    """Every page and twin on every ledger, in interleaved rounds (size after size, round after
    round), so the machine's load falls on every size alike."""
    pages = [(page, twin) for page, twin in PAGES if not args.pages or any(p in twin for p in args.pages.split(","))]
    times: dict[str, dict[int, list[float]]] = {}
    async with AsyncExitStack() as stack:
        apps = {rows: await stack.enter_async_context(logged_in(url, data)) for rows, (url, data) in ledgers.items()}
        for round_ in range(-1, args.repeat // ROUND):
            for rows, (client, auth) in apps.items():
                session, bearer = {"cookie": auth["session"]}, {"authorization": f"Bearer {ADMIN}"}
                for page, twin in pages:
                    for name, path, headers in ((f"page {page}", page, session), (f"twin {twin}", twin, bearer)):
                        seconds = await timed(client, path, headers, ROUND)
                        if round_ >= 0:  # round -1 warms up
                            times.setdefault(name, {}).setdefault(rows, []).extend(seconds)
    return times


async def insert_rates(ledgers: dict[int, tuple[str, Path]], rows: int = 3000, batch: int = 100) -> dict[int, float]:
    """Rows/s that `store.write` (rows and their rollups, one transaction per batch of 100, the
    writer's path) sustains on each ledger, in interleaved rounds of 500 rows."""
    stores = {size: open_ledger_store(url, data) for size, (url, data) in ledgers.items()}
    spent = dict.fromkeys(stores, 0.0)
    written = dict.fromkeys(stores, 0)
    rng, now = random.Random(7), time.time()
    base = time.time_ns() // 1000 * 10**7  # new request ids on every run (a kept ledger has the last run's)
    for first in range(0, rows, 500):
        for i, (size, store) in enumerate(stores.items()):
            fresh = [row for n in range(first, first + 500) for row in request_rows(base + i * 10**6 + n, now, rng)]
            start = time.perf_counter()
            for at in range(0, len(fresh), batch):
                await store.write(fresh[at : at + batch])
            spent[size] += time.perf_counter() - start
            written[size] += len(fresh)
    for store in stores.values():
        await store.close()
    return {size: written[size] / spent[size] for size in stores}


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


@contextmanager
def ledgers(backend: str, sizes: list[int], args: argparse.Namespace) -> Iterator[dict[int, tuple[str, Path]]]:
    """A seeded ledger of each size: SQLite files (kept in --keep DIR and reused when given), or
    databases of one PostgreSQL server."""
    with tempfile.TemporaryDirectory(prefix="margin-dash-bench-") as tmp, ExitStack() as stack:
        root = Path(args.keep) if args.keep else Path(tmp)
        server = None if backend == "sqlite" or args.postgres_url else stack.enter_context(throwaway_postgres())
        out: dict[int, tuple[str, Path]] = {}
        for rows in sizes:
            data = root / f"{backend}-{rows}"
            data.mkdir(parents=True, exist_ok=True)
            start, now = time.perf_counter(), time.time()
            if backend == "sqlite":
                url = f"sqlite:///{data}/ledger.db"
                if (data / "seeded").exists():
                    print(f"sqlite {rows:>9}: reusing {data}", flush=True)
                    out[rows] = url, data
                    continue
                (data / "ledger.db").unlink(missing_ok=True)
                stored = seed_sqlite(data / "ledger.db", rows, now)
                (data / "seeded").touch()
            else:
                url = args.postgres_url.format(rows=rows) if server is None else server.create_database(f"dash{rows}")
                stored = seed_postgres(url, rows, now)
            print(f"{backend} {stored:>9} ledger rows seeded in {time.perf_counter() - start:.1f} s", flush=True)
            out[rows] = url, data
        yield out


@contextmanager
def throwaway_postgres() -> Iterator[Any]:
    from tests.support.postgres import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql), or pass --postgres-url")
    server = PostgresServer(bin_dir, Path(tempfile.mkdtemp(prefix="margin-pg-dash-")))
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(server.root, ignore_errors=True)


def report(backend: str, sizes: list[int], times: dict[str, dict[int, list[float]]], rates: dict[int, float]) -> None:
    small, large = sizes[0], sizes[-1]
    missed = 0
    for name, by_size in times.items():
        p95 = {rows: p(seconds, 95) for rows, seconds in by_size.items()}
        growth = p95[large] / p95[small] - 1
        ok = max(p95.values()) <= 300 and growth <= 0.2
        missed += not ok
        cells = "  ".join(f"{rows:>9,}: p50 {p(by_size[rows], 50):6.1f} p95 {p95[rows]:6.1f}" for rows in sizes)
        print(f"{backend} {name:<58} {cells} ms  p95 {growth:+.0%} {'ok' if ok else 'MISSED'}")
    for rows in sizes:
        print(f"{backend} insert throughput at {rows:>9,} rows: {rates[rows]:,.0f} rows/s")
    print(f"{backend}: insert throughput at {large:,} / at {small:,} rows: {rates[large] / rates[small]:.2f}; "
          f"pages within target: {len(times) - missed}/{len(times)}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000", help="ledger sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=40, help="requests per page and twin (in rounds of 5)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pages", default="", help="only the pages whose twin path contains one of these (commas)")
    parser.add_argument("--keep", default="", help="keep (and reuse) the seeded SQLite ledgers in this folder")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("MARGIN_BENCH_POSTGRES_URL"),
        help="a database per size, {rows} in the URL naming it (a seeding resumes where it stopped)",
    )
    args = parser.parse_args()
    sizes = sorted(int(r) for r in args.rows.split(","))
    for backend in args.backends.split(","):
        with ledgers(backend, sizes, args) as seeded:
            times = asyncio.run(measure(seeded, args))
            rates = asyncio.run(insert_rates(seeded))
        report(backend, sizes, times, rates)


if __name__ == "__main__":
    main()
