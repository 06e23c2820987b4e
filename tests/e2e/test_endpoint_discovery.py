"""Issue 24, 2b: pods behind a headless Service (`endpoints_from:`). The gateway resolves a real name
(`localhost`, A records only: the fake upstream listens on 127.0.0.1) with the loop's getaddrinfo,
and requests reach the fake upstream through the discovered endpoint."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
from openai import OpenAI

from tests.support.processes import fake_upstream, gateway


def config(port: int) -> str:
    return f"""
deployments:
  - name: vllm
    provider: openai_compat
    model: fake-llama
    endpoints_from: {{dns: localhost, port: {port}, scheme: http, path: /v1, refresh_s: 1, family: ipv4}}
    price: {{input: "1", output: "1"}}
models:
  - {{name: chat, deployments: [vllm]}}
"""


def test_requests_reach_the_endpoint_a_dns_name_resolves_to(tmp_path: Path) -> None:
    with fake_upstream() as upstream, gateway(config(urlsplit(upstream).port or 0), tmp_path) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        for i in range(3):
            answer = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": f"hi {i}"}])
            assert answer.choices[0].message.content
        stats = httpx.get(f"{upstream}/_fake/stats", timeout=10).json()
        assert stats["calls"].get("fake-llama") == 3
        listing = httpx.get(f"{url}/admin/deployments", timeout=10).json()["data"]
        vllm = next(d for d in listing if d["name"] == "vllm")
        assert [r["endpoint"] for r in vllm["replicas"]] == [f"127.0.0.1:{urlsplit(upstream).port}"]
        assert vllm["replicas"][0]["picked"] == 3
        assert vllm["discovery"]["dns"] == "localhost" and vllm["discovery"]["resolutions"] >= 1
        assert vllm["discovery"]["failures"] == 0
