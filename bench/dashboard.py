"""Dashboard page time against ledger size (issue 21, section 4), SQLite (or --database-url).

Seeds a ledger of each size in --rows (a realistic mix over 90 days: 8 teams, 40 keys, 6 models over
3 cost ranks, 3% errors, 10% cache hits), then times the Overview page (`GET /dashboard`, logged in)
and its JSON twin (`GET /admin/api/overview`) through the real app in process, --repeat times each.
The pages read rollups only, so their time should not grow with the ledger: the script prints each
size's p50/p95 and the growth of the largest size's p95 over the smallest's.

    python bench/dashboard.py [--rows 10000,100000] [--repeat 40] [--database-url URL]

Targets (issue 21): p95 <= 300 ms, and no more than 20% slower at the largest size. The issue's
sizes are 100,000 and 1,000,000 rows; seeding a million rows takes minutes on a small machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from margin.app import create_app
from margin.config import parse_config
from margin.storage import open_ledger_store
from margin.storage.ledger_row import LedgerRow
from margin.storage.memory import MemoryKeyStore

ADMIN = "sk-admin-bench-dashboard-0000000000"
MODELS = (("small", 1), ("small-2", 1), ("mid", 2), ("mid-2", 2), ("large", 3), ("large-2", 3))
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
"""


def seeded_row(n: int, now: float, rng: random.Random) -> LedgerRow:
    model, rank = MODELS[n % len(MODELS)]
    tokens_in, tokens_out = rng.randint(50, 4000), rng.randint(10, 800)
    cost = (Decimal(tokens_in) * rank + Decimal(tokens_out) * rank * 4).scaleb(-6)
    failed, hit = rng.random() < 0.03, rng.random() < 0.10
    return LedgerRow(
        attempt_id=f"bench-{n}:0", request_id=f"bench-{n}", attempt_index=0,
        ts=now - rng.uniform(0, 90 * 86400), endpoint="chat", key_id=f"key-{n % 40}", org="org",
        team=f"team-{n % 8}", user=f"user-{n % 200}", tags=(f"feature:{n % 5}",), endpoint_class="interactive",
        model_group="chat", route_policy="static", tier=rank, deployment=model, model=model, fallback_index=0,
        is_final=True, status="error" if failed else "ok", error_class="server_error" if failed else None,
        latency_ms=rng.uniform(100, 4000), ttft_ms=rng.uniform(50, 800), tokens_per_s=rng.uniform(20, 120),
        input_uncached=tokens_in, output=tokens_out, cost_input_uncached=cost, cost_total=Decimal(0) if hit else cost,
        cache_result="exact" if hit else "none", saved_cost=cost if hit else Decimal(0),
    )  # fmt: skip


async def seed(url: str, data: Path, rows: int) -> None:
    store = open_ledger_store(url, data)
    await store.migrate()
    rng, now = random.Random(rows), time.time()
    for first in range(0, rows, 2000):
        await store.write([seeded_row(n, now, rng) for n in range(first, min(rows, first + 2000))])
    await store.close()


async def timed(client: httpx.AsyncClient, path: str, headers: dict[str, str], repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        answer = await client.get(path, headers=headers)
        seconds.append(time.perf_counter() - start)
        assert answer.status_code == 200, answer.text
    return seconds


async def measure(url: str, data: Path, repeat: int) -> dict[str, list[float]]:
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
        session = {"cookie": f"margin_session={client.cookies['margin_session']}"}
        await timed(client, "/dashboard", session, 3)  # warm-up
        bearer = {"authorization": f"Bearer {ADMIN}"}
        return {
            "page /dashboard": await timed(client, "/dashboard", session, repeat),
            "twin /admin/api/overview": await timed(client, "/admin/api/overview", bearer, repeat),
        }


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else values[0] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000", help="ledger sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--database-url", default="sqlite:///{data_dir}/ledger.db")
    args = parser.parse_args()
    p95s: dict[str, dict[int, float]] = {}
    for rows in (int(r) for r in args.rows.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            asyncio.run(seed(args.database_url, Path(tmp), rows))
            print(f"{rows:>9} rows seeded in {time.perf_counter() - start:.1f} s")
            for name, seconds in asyncio.run(measure(args.database_url, Path(tmp), args.repeat)).items():
                p95s.setdefault(name, {})[rows] = p(seconds, 95)
                print(f"    {name:<28} p50 {p(seconds, 50):7.1f} ms   p95 {p(seconds, 95):7.1f} ms")
    for name, by_size in p95s.items():
        small, large = by_size[min(by_size)], by_size[max(by_size)]
        verdict = "ok" if max(by_size.values()) <= 300 and large <= small * 1.2 else "MISSED"
        print(f"{name}: p95 {small:.1f} ms at {min(by_size)} rows, {large:.1f} ms at {max(by_size)} rows "
              f"({(large / small - 1) * 100:+.0f}%), target p95 <= 300 ms and <= +20%: {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
