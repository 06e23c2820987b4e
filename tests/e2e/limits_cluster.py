"""Three `margin serve` processes sharing a real redis-server (counters) and a real PostgreSQL (keys,
ledger), in front of one fake upstream whose answers have a known size, for the stage-② acceptance
tests. Prices make each request's worst case $0.05 and its actual cost $0.03:

    prompt "hi" = 1 token + 6 of chat framing = 7 tokens x $1000/M = $0.007
    max_tokens 43 x $1000/M = $0.043            -> worst case $0.050 (50 tokens)
    the fake answers 23 one-letter words = 23 tokens -> actual $0.030 (30 tokens)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tests.support.postgres import postgres_server
from tests.support.processes import fake_upstream, gateway
from tests.support.redis import RedisServer, redis_server

ADMIN = "admin-key-for-the-cluster-test"
ANSWER = " ".join(["w"] * 23)
REQUEST = {"model": "metered", "max_tokens": 43, "messages": [{"role": "user", "content": "hi"}]}
REDIS_TIMEOUT_MS = 1000


def cluster_config(upstream: str, database: str, redis: str) -> str:
    return f"""
deployments:
  - name: fake-metered
    provider: openai_compat
    model: fake-metered
    base_url: {upstream}/v1
    price: {{input: "1000", output: "1000"}}
models:
  - {{name: metered, deployments: [fake-metered]}}
database: {{url: "{database}"}}
redis: {{url: "{redis}"}}
auth: required
server: {{admin_key: env:MARGIN_ADMIN_KEY}}
cache: {{enabled: false}}
rate_limits:
  - {{scope: "tag:bulk", requests_per_minute: 100000, on_store_failure: fail_open}}
limits: {{redis_timeout_ms: {REDIS_TIMEOUT_MS}, redis_failure: fail_closed, fail_open_share: 0.5}}
"""


@dataclass
class Cluster:
    urls: list[str]
    upstream: str
    database: str
    redis: RedisServer

    def create_key(self, **spec: Any) -> str:
        response = httpx.post(
            f"{self.urls[0]}/admin/keys", json=spec, headers={"authorization": f"Bearer {ADMIN}"}, timeout=10
        )
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    def key_id(self, key: str) -> str:
        response = httpx.get(f"{self.urls[0]}/admin/keys", headers={"authorization": f"Bearer {ADMIN}"})
        prefix = key[: len("sk-margin-") + 6]
        return str(next(k["key_id"] for k in response.json()["data"] if k["prefix"].startswith(prefix)))

    def upstream_calls(self) -> int:
        return int(httpx.get(f"{self.upstream}/_fake/stats").json()["total"])

    def budgets(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.urls[1]}/admin/budgets/status", headers={"authorization": f"Bearer {ADMIN}"})
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    def ledger(self, key_id: str, expected_rows: int, timeout: float = 20.0) -> tuple[int, Decimal, int]:
        """(rows, recorded cost, recorded tokens) for a key, once `expected_rows` rows have landed."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            with psycopg.connect(self.database) as conn:
                row = conn.execute(
                    "SELECT count(*), coalesce(sum(cost_total), 0), coalesce(sum(input_uncached + output), 0) "
                    "FROM ledger_attempts WHERE key_id = %s AND status <> 'refused'",  # a 402/429's row: no attempt
                    (key_id,),
                ).fetchone()
            assert row is not None
            if row[0] >= expected_rows or time.monotonic() > deadline:
                return int(row[0]), Decimal(row[1]), int(row[2])
            time.sleep(0.2)


@contextmanager
def cluster(tmp: Path, replicas: int = 3) -> Iterator[Cluster]:
    with ExitStack() as stack:
        pg = stack.enter_context(postgres_server())
        redis = stack.enter_context(redis_server())
        upstream = stack.enter_context(fake_upstream("--content", ANSWER))
        database = pg.create_database(f"limits_{uuid.uuid4().hex[:10]}")
        config = cluster_config(upstream, database, redis.url)
        urls = []
        for n in range(replicas):
            folder = tmp / f"replica{n}"
            folder.mkdir()
            env = {"MARGIN_ADMIN_KEY": ADMIN}
            urls.append(stack.enter_context(gateway(config, folder, env=env, timeout=60)))
        running = Cluster(urls, upstream, database, redis)
        warm = running.create_key(name="warm-up")  # connection pools and caches, as in a live gateway
        asyncio.run(burst(urls, warm, 30))
        yield running


async def _one(http: httpx.AsyncClient, url: str, key: str) -> tuple[int, float, dict[str, Any]]:
    started = time.perf_counter()
    response = await http.post(f"{url}/v1/chat/completions", json=REQUEST, headers={"authorization": f"Bearer {key}"})
    return response.status_code, time.perf_counter() - started, response.json()


async def burst(urls: list[str], key: str, count: int) -> list[tuple[int, float, dict[str, Any]]]:
    """`count` requests at once, spread round-robin over the replicas."""
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        return await asyncio.gather(*(_one(http, urls[i % len(urls)], key) for i in range(count)))
