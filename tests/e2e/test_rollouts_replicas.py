"""The rollback case on three `margin serve` processes sharing PostgreSQL (rollout state, signals,
ledger) and Redis (counters), in front of one fake upstream whose candidate model answers 30% of
prompts wrongly: every replica applies the same sticky split, the replicas' signals add up, one
replica's decider rolls the candidate back (exactly one audited transition, however many decide),
and within the refresh interval every replica sends every session back to stable."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from tests.support.postgres import postgres_server
from tests.support.processes import fake_upstream, gateway
from tests.support.redis import redis_server

REFRESH_S = 0.5


def config(upstream: str, database: str, redis: str) -> str:
    def deployment(name: str) -> str:
        return (f"  - {{name: {name}, provider: openai_compat, model: fake-{name}, base_url: '{upstream}/v1', "
                f'price: {{input: "1", output: "2"}}}}\n')  # fmt: skip

    return (
        f'database: {{url: "{database}"}}\nredis: {{url: "{redis}"}}\ncache: {{enabled: false}}\n'
        f"rollouts: {{refresh_s: {REFRESH_S}, decide_every_s: 0.5, flush_every_s: 0.3}}\n"
        "deployments:\n" + deployment("good") + deployment("worse")
        + "models:\n"
        "  - name: assistant\n"
        "    deployments: [good]\n"
        "    rollout:\n"
        "      min_requests: 30\n"
        "      online_grader: {type: regex, pattern: '^(?!I do not know)'}\n"
        "      margins: {error_rate: 0.02, quality: 0.02, latency: null, ttft: null}\n"
        # A first step that outlasts the test: the share holds still while stickiness is checked.
        "      steps: [{share: 0.3, min_requests: 100000, min_duration_s: 1}, {share: 0.5}]\n"
    )  # fmt: skip


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    tmp = tmp_path_factory.mktemp("rollout-replicas")
    with ExitStack() as stack:
        pg = stack.enter_context(postgres_server())
        redis = stack.enter_context(redis_server())
        upstream = stack.enter_context(fake_upstream("--fault", "fake-worse=wrong=0.3"))
        text = config(upstream, pg.create_database(f"ro_{uuid.uuid4().hex[:10]}"), redis.url)
        urls = []
        for n in range(3):
            folder = tmp / f"replica{n}"
            folder.mkdir()
            urls.append(stack.enter_context(gateway(text, folder, timeout=60)))
        yield urls


def answered_by(http: httpx.Client, url: str, session: str, prompt: str = "hello") -> str:
    response = http.post(f"{url}/v1/chat/completions", headers={"x-margin-session": session},
                         json={"model": "assistant", "messages": [{"role": "user", "content": prompt}]})  # fmt: skip
    assert response.status_code == 200, response.text
    return str(response.headers["x-margin-route"]).split("deployment=")[1].split(";")[0]


def state(http: httpx.Client, url: str) -> dict:  # type: ignore[type-arg]
    response = http.get(f"{url}/admin/rollouts/assistant")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_every_replica_splits_alike_and_rolls_back_together(replicas: list[str]) -> None:
    http = httpx.Client(timeout=10)
    started = http.post(f"{replicas[0]}/admin/rollouts", json={"model_group": "assistant", "candidate": "worse",
                                                                "skip_gate": True})  # fmt: skip
    assert started.status_code == 201, started.text
    deadline = time.monotonic() + 10
    while not all(state(http, url)["state"] == "canary" for url in replicas):
        assert time.monotonic() < deadline, [state(http, url) for url in replicas]
        time.sleep(0.2)
    time.sleep(REFRESH_S * 2)  # every replica has read the canary split
    sessions = [f"user-{i}" for i in range(40)]
    arms = {s: {answered_by(http, url, s) for url in replicas} for s in sessions}
    assert all(len(seen) == 1 for seen in arms.values())  # one session, one arm, on every replica
    assert {next(iter(seen)) for seen in arms.values()} == {"good", "worse"}

    deadline = time.monotonic() + 120
    i = 0
    while state(http, replicas[i % 3])["state"] != "rolled_back":
        assert time.monotonic() < deadline, state(http, replicas[0])
        for n, url in enumerate(replicas):
            answered_by(http, url, f"load-{i}-{n}", prompt=f"question {i} {n}")
        i += 1
    rolled_back_at = time.monotonic()
    time.sleep(REFRESH_S * 2 + 0.5)
    after = {answered_by(http, url, s) for url in replicas for s in sessions}
    assert after == {"good"}, after
    assert time.monotonic() - rolled_back_at < 10
    history = http.get(f"{replicas[2]}/admin/rollouts/assistant/history").json()["transitions"]
    assert [t["to"] for t in history].count("rolled_back") == 1  # one transition, however many replicas decided
    signals = history[-1]["snapshot"]["arms"]
    assert signals["candidate"]["requests"] >= 30 and signals["stable"]["requests"] >= 30
    deciders = {t["actor"] for t in history if t["actor"].startswith("auto:")}
    assert deciders  # made by a replica's periodic task
