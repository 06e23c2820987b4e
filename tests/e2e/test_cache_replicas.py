"""Two `margin serve` replicas sharing PostgreSQL and one Redis cache (real servers, real HTTP, openai SDK):
an answer cached by one is served by the other without an upstream call, exact and semantic; the
tenant wall holds across replicas; an invalidation on one replica is seen by the other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import fake_config
from tests.support.postgres import postgres_server
from tests.support.processes import fake_upstream, gateway
from tests.support.redis import redis_server

ADMIN = "admin-secret-for-tests"


@dataclass
class Replicas:
    urls: list[str]
    upstream: str
    redis_url: str

    def ask_and_wait(self, n: int, key: str, text: str):  # type: ignore[no-untyped-def]
        """Ask replica n, then wait until its answer is in Redis (cache writes happen after the
        response, off the request path, so the very next request may otherwise race them)."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        before = client.zcard("e2e:cache:keys")
        response = ask(self.client(n, key), text)
        deadline = time.monotonic() + 5
        while client.zcard("e2e:cache:keys") == before and time.monotonic() < deadline:
            time.sleep(0.01)
        client.close()
        return response

    def client(self, n: int, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.urls[n]}/v1", api_key=key, max_retries=0)

    def upstream_calls(self) -> int:
        return int(httpx.get(f"{self.upstream}/_fake/stats").json()["total"])

    def create_key(self, name: str) -> str:
        response = httpx.post(
            f"{self.urls[0]}/admin/keys", json={"name": name}, headers={"authorization": f"Bearer {ADMIN}"}
        )
        response.raise_for_status()
        return str(response.json()["key"])


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    with ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        database = stack.enter_context(postgres_server()).create_database(f"cache_{uuid.uuid4().hex[:10]}")
        upstream = stack.enter_context(fake_upstream())
        extra = f"""
database: {{url: "{database}"}}
redis: {{url: "{redis.url}", prefix: "e2e:"}}
cache:
  backend: redis
  semantic: {{enabled: true, threshold: 0.95}}
  engine: {{embedder: hashing, sync_interval_s: 0}}
"""
        env = {"FAKE_UPSTREAM_KEY": "sk-fake-secret-123", "MARGIN_ADMIN_KEY": ADMIN}
        urls = []
        for n in range(2):
            folder: Path = tmp_path_factory.mktemp(f"replica{n}")
            urls.append(stack.enter_context(gateway(fake_config(upstream, extra), folder, env=env, timeout=60)))
        yield Replicas(urls, upstream, redis.url)


def ask(client: openai.OpenAI, text: str):  # type: ignore[no-untyped-def]
    return client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": text}], temperature=0
    )


def test_an_answer_cached_on_one_replica_is_served_by_the_other(replicas: Replicas) -> None:
    key = replicas.create_key("shared")
    text = f"what does replica sharing look like {uuid.uuid4().hex}"
    first = replicas.ask_and_wait(0, key, text)
    assert first.headers["x-margin-cache"] == "miss"
    calls = replicas.upstream_calls()
    second = ask(replicas.client(1, key), text)
    assert second.headers["x-margin-cache"] == "exact"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert replicas.upstream_calls() == calls


def test_a_semantic_entry_from_one_replica_matches_on_the_other(replicas: Replicas) -> None:
    key = replicas.create_key("semantic")
    word = uuid.uuid4().hex[:10]
    assert replicas.ask_and_wait(0, key, f"how do i water the {word} plant in my garden").headers["x-margin-cache"]
    calls = replicas.upstream_calls()
    hit = ask(replicas.client(1, key), f"How do I water the {word} plant in my garden?")
    assert hit.headers["x-margin-cache"] == "semantic"
    assert replicas.upstream_calls() == calls


def test_another_tenant_never_gets_the_answer_on_any_replica(replicas: Replicas) -> None:
    owner, stranger = replicas.create_key("owner"), replicas.create_key("stranger")
    text = f"private question {uuid.uuid4().hex}"
    replicas.ask_and_wait(0, owner, text)
    assert replicas.ask_and_wait(1, stranger, text).headers["x-margin-cache"] == "miss"
    assert ask(replicas.client(0, stranger), text).headers["x-margin-cache"] == "exact"  # its own entry now


def test_an_invalidation_on_one_replica_empties_the_shared_cache(replicas: Replicas) -> None:
    key = replicas.create_key("invalidated")
    text = f"soon forgotten {uuid.uuid4().hex}"
    replicas.ask_and_wait(0, key, text)
    assert ask(replicas.client(1, key), text).headers["x-margin-cache"] == "exact"
    response = httpx.post(
        f"{replicas.urls[1]}/admin/cache/invalidate",
        json={"model": "gpt-4o"},
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    assert response.status_code == 200 and response.json()["invalidated"] >= 1
    assert ask(replicas.client(0, key), text).headers["x-margin-cache"] == "miss"
