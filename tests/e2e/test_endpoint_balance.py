"""Issue 24, 2b: a deployment with several replicas (`endpoints:`): requests that share a prefix
reach the same replica, different conversations spread over both, and a replica that refuses
connections is taken out without a client seeing an error."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.processes import fake_upstream, free_port, gateway


def config(endpoints: list[str]) -> str:
    urls = ", ".join(f'"{u}/v1"' for u in endpoints)
    return f"""
deployments:
  - name: vllm
    provider: openai_compat
    model: fake-llama
    endpoints: [{urls}]
    price: {{input: "1", output: "1"}}
    balance: {{affinity_chars: 200, cooldown_s: 60}}
models:
  - {{name: chat, deployments: [vllm]}}
"""


def calls(upstream: str) -> int:
    found: int = httpx.get(f"{upstream}/_fake/stats", timeout=10).json()["calls"].get("fake-llama", 0)
    return found


def ask(url: str, system: str, question: str) -> httpx.Response:
    body = {"model": "chat", "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)


def test_a_shared_prefix_sticks_to_one_replica_and_conversations_spread(tmp_path: Path) -> None:
    with fake_upstream() as a, fake_upstream() as b, gateway(config([a, b]), tmp_path) as url:
        system = "You are the support agent of ACME. " * 5  # the long shared start of a conversation
        for i in range(8):
            assert ask(url, system, f"question {i}").status_code == 200
        assert sorted((calls(a), calls(b))) == [0, 8]  # one replica holds that prefix's cache
        for i in range(40):
            assert ask(url, f"tenant {i} system prompt", "hello").status_code == 200
        assert min(calls(a), calls(b)) >= 8  # 40 other conversations spread over both


def test_a_replica_refusing_connections_is_taken_out_without_client_errors(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with fake_upstream() as alive, gateway(config([dead, alive]), tmp_path) as url:
        answers = [ask(url, f"conversation {i}", "hi") for i in range(20)]
        assert [r.status_code for r in answers] == [200] * 20
        assert calls(alive) == 20
        listing = httpx.get(f"{url}/admin/deployments", timeout=10).json()["data"]
        replicas = next(d for d in listing if d["name"] == "vllm")["replicas"]
        assert [r["endpoint"] for r in replicas] == [dead.removeprefix("http://"), alive.removeprefix("http://")]
        assert replicas[0]["out_for_s"] > 0 and replicas[1]["picked"] >= 20
