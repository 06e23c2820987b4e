"""Dashboard page time against ledger size (issue 21, section 4), on SQLite and PostgreSQL.

For each size in --rows, seeds a ledger (bench/dashboard_seed.py: a realistic mix over 90 days,
rollups and histograms bulk-inserted as margin's writer would have stored them), then times every
dashboard page (logged in) and its JSON twin through the real app in process, --repeat times each,
and the ledger's insert throughput on that ledger (`store.write`, batches of 100 rows, the writer's
path). Prints each page's p50/p95 per size, the growth of the largest size's p95 over the smallest's,
and the insert throughput ratio between sizes, all measured in this run.

    python bench/dashboard.py [--rows 10000,100000] [--repeat 30] [--backends sqlite,postgres]
    python bench/dashboard.py --rows 100000,1000000      # the issue's sizes (minutes to seed)

PostgreSQL is a throwaway server started the way the tests start one (tests/support/postgres.py),
or --postgres-url. Targets (issue 21): p95 <= 300 ms on both backends, and no page more than 20%
slower at the largest size than at the smallest.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
"""
# (page, twin): every dashboard page the app serves, with the query a user would send.
PAGES: tuple[tuple[str, str], ...] = (
    ("/dashboard", "/admin/api/overview"),
    ("/dashboard/spend?by=team&period=day&since=30d", "/admin/api/spend?by=team&period=day&since=30d"),
    ("/dashboard/spend?by=key&period=hour&since=2d", "/admin/api/spend?by=key&period=hour&since=2d"),
    ("/dashboard/performance?since=7d", "/admin/api/performance?since=7d"),
    ("/dashboard/budgets", "/admin/api/budgets"),
    ("/dashboard/cache?since=30d", "/admin/api/cache?since=30d"),
)


async def timed(client: httpx.AsyncClient, path: str, headers: dict[str, str], repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        answer = await client.get(path, headers=headers)
        seconds.append(time.perf_counter() - start)
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
    return seconds


async def measure(url: str, data: Path, repeat: int, only: str) -> dict[str, list[float]]:
    os.environ["BENCH_DASHBOARD_ADMIN_KEY"] = ADMIN
    app = create_app(parse_config(CONFIG.format(data=data, url=url)), key_store=MemoryKeyStore())
    transport = httpx.ASGITransport(app=app)
    times: dict[str, list[float]] = {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="https://gw") as client,
    ):
        form = await client.get("/dashboard/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        await client.post("/dashboard/login", data={"csrf": csrf.group(1), "admin_key": ADMIN})
        session = {"cookie": f"margin_session={client.cookies['margin_session']}"}
        bearer = {"authorization": f"Bearer {ADMIN}"}
        for page, twin in PAGES:
            if only and not any(part in twin for part in only.split(",")):
                continue
            await timed(client, page, session, 2)  # warm-up
            times[f"page {page}"] = await timed(client, page, session, repeat)
            times[f"twin {twin}"] = await timed(client, twin, bearer, repeat)
    return times


async def insert_rate(url: str, data: Path, rows: int = 3000, batch: int = 100) -> float:
    """Rows/s that `store.write` (rows and their rollups, one transaction a batch) sustains now."""
    store = open_ledger_store(url, data)
    rng, now = random.Random(7), time.time()
    fresh = [row for n in range(rows) for row in request_rows(10**9 + n, now, rng)]
    start = time.perf_counter()
    for first in range(0, len(fresh), batch):
        await store.write(fresh[first : first + batch])
    elapsed = time.perf_counter() - start
    await store.close()
    return len(fresh) / elapsed


def p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


@contextmanager
def ledger_url(backend: str, postgres_url: str | None, name: str) -> Iterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="margin-dash-bench-") as tmp:
        if backend == "sqlite":
            yield f"sqlite:///{tmp}/ledger.db", Path(tmp)
        elif postgres_url is not None:
            yield postgres_url, Path(tmp)
        else:
            with throwaway_postgres(name) as url:
                yield url, Path(tmp)


@contextmanager
def throwaway_postgres(name: str) -> Iterator[str]:
    from tests.support.postgres import PostgresServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql), or pass --postgres-url")
    server = PostgresServer(bin_dir, Path(tempfile.mkdtemp(prefix="margin-pg-dash-")))
    try:
        server.init()
        server.start()
        yield server.create_database(name)
    finally:
        server.stop("immediate")
        shutil.rmtree(server.root, ignore_errors=True)


def run_size(backend: str, rows: int, args: argparse.Namespace) -> tuple[dict[str, list[float]], float]:
    with ledger_url(backend, args.postgres_url, f"dash{rows}") as (url, data):
        start, now = time.perf_counter(), time.time()
        stored = seed_sqlite(data / "ledger.db", rows, now) if backend == "sqlite" else seed_postgres(url, rows, now)
        print(f"{backend} {stored:>9} ledger rows seeded in {time.perf_counter() - start:.1f} s", flush=True)
        times = asyncio.run(measure(url, data, args.repeat, args.pages))
        rate = asyncio.run(insert_rate(url, data))
    for name, seconds in times.items():
        print(f"    {name:<62} p50 {p(seconds, 50):7.1f} ms   p95 {p(seconds, 95):7.1f} ms", flush=True)
    print(f"    insert throughput (store.write, batches of 100): {rate:,.0f} rows/s", flush=True)
    return times, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000", help="ledger sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pages", default="", help="only the pages whose twin path contains one of these (commas)")
    parser.add_argument("--postgres-url", default=os.environ.get("MARGIN_BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    sizes = sorted(int(r) for r in args.rows.split(","))
    for backend in args.backends.split(","):
        p95s: dict[str, dict[int, float]] = {}
        rates: dict[int, float] = {}
        for rows in sizes:
            times, rates[rows] = run_size(backend, rows, args)
            for name, seconds in times.items():
                p95s.setdefault(name, {})[rows] = p(seconds, 95)
        small, large = sizes[0], sizes[-1]
        missed = 0
        for name, by_size in p95s.items():
            growth = by_size[large] / by_size[small] - 1
            ok = max(by_size.values()) <= 300 and growth <= 0.2
            missed += not ok
            print(f"{backend} {name:<62} p95 {by_size[small]:6.1f} -> {by_size[large]:6.1f} ms ({growth:+.0%}) "
                  f"{'ok' if ok else 'MISSED'}")  # fmt: skip
        print(f"{backend}: insert throughput at {large:,} rows / at {small:,} rows: {rates[large] / rates[small]:.2f}; "
              f"pages within target: {len(p95s) - missed}/{len(p95s)}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
