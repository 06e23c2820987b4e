"""Issue 24, section 2: margin scrapes a vLLM-shaped /metrics page on loopback, turns it and its own
counters into a desired replica count, and serves that to KEDA's metrics-api scaler (`/autoscale`)
and to Prometheus (`margin_deployment_desired_replicas`); a hanging /metrics page times out, is
counted, and never holds up a request; requests that found no endpoint wake a deployment at zero."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from margin.app import create_app
from margin.config import parse_config
from margin.errors import ConfigError
from tests.support.loopback import serving
from tests.support.processes import free_port
from tests.unit.autoscale.vllm_page import vllm_page

ADMIN = "sk-admin-autoscale-test"
AUTH = {"authorization": f"Bearer {ADMIN}"}


@dataclass
class FakeVllm:
    """A model server's /metrics only: the load it reports is set by the test."""

    running: float = 0.0
    waiting: float = 0.0
    hung: int = 0  # requests to /hang/metrics that are waiting now
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> Starlette:
        async def page(request: Request) -> PlainTextResponse:
            return PlainTextResponse(vllm_page(self.running, self.waiting, kv=0.4), media_type="text/plain")

        async def hang(request: Request) -> PlainTextResponse:
            self.hung += 1
            try:
                await self.release.wait()
            finally:
                self.hung -= 1
            return PlainTextResponse(vllm_page(0, 0))

        return Starlette(routes=[Route("/metrics", page), Route("/hang/metrics", hang)])


def config(tmp_path: Path, vllm: str, closed: str) -> str:
    return f"""
data_dir: {tmp_path / "data"}
server: {{admin_key: {ADMIN}}}
deployments:
  - {{name: vllm-llama, provider: fake, model: llama, fake: {{latency_ms: 50}}}}
  - {{name: slow-vllm, provider: fake, model: slow}}
  - {{name: cold-vllm, provider: openai_compat, model: cold, base_url: "{closed}/v1",
     retry: {{max_retries: 0}}}}
  - {{name: replicas, provider: openai_compat, model: llama, endpoints: ["{vllm}/v1"]}}
models:
  - {{name: chat, deployments: [vllm-llama]}}
  - {{name: slow, deployments: [slow-vllm]}}
  - {{name: cold, deployments: [cold-vllm]}}
autoscaling:
  interval_s: 0.1
  window_s: 3
  scrape_timeout_s: 0.3
  stale_after_s: 1.5
  deployments:
    vllm-llama: {{metrics_urls: ["{vllm}/metrics"], target_queue_per_replica: 4, max_replicas: 8}}
    slow-vllm: {{metrics_urls: ["{vllm}/hang/metrics"]}}
    cold-vllm: {{metrics_urls: ["{closed}/metrics"], min_replicas: 0}}
    replicas: {{}}  # its pages are its endpoints' /metrics
"""


@asynccontextmanager
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[FakeVllm, Starlette, httpx.AsyncClient]]:
    fake = FakeVllm()
    async with serving(fake.app()) as vllm:
        closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: a deployment at zero replicas
        app = create_app(parse_config(config(tmp_path, vllm, closed)))
        try:
            async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
                yield fake, app, client
        finally:
            fake.release.set()


async def keda(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get("/autoscale", headers=AUTH)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def value_at(body: dict[str, Any], location: str) -> Any:
    """KEDA's `valueLocation` (a GJSON path; these names need no escaping)."""
    found: Any = body
    for part in location.split("."):
        found = found[part]
    return found


async def until(client: httpx.AsyncClient, check: Any, timeout_s: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body = await keda(client)
        if body["ticks"] and check(body):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


async def metric_samples(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = (await client.get("/metrics", headers=AUTH)).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def desired(body: dict[str, Any], name: str) -> int:
    found: int = value_at(body, f"deployments.{name}.desired_replicas")
    return found


async def test_desired_replicas_follow_the_model_servers_queue(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (fake, _, client):
        fake.running, fake.waiting = 2, 0
        body = await until(client, lambda b: b["deployments"]["vllm-llama"]["upstream"]["running"] == 2)
        signals = body["deployments"]["vllm-llama"]
        assert signals["upstream"]["running"] == 2 and signals["upstream"]["kv_cache_usage"] == 0.4
        assert (desired(body, "vllm-llama"), signals["load_source"]) == (1, "upstream")

        fake.running, fake.waiting = 12, 10  # ceil(22 / 4) = 6
        body = await until(client, lambda b: desired(b, "vllm-llama") == 6)
        assert body["deployments"]["vllm-llama"]["reason"] == "queue"
        samples = await metric_samples(client)
        assert samples[("margin_deployment_desired_replicas", (("deployment", "vllm-llama"),))] == 6
        assert samples[("margin_upstream_requests_waiting", (("deployment", "vllm-llama"),))] == 10
        assert samples[("margin_upstream_metrics_stale", (("deployment", "vllm-llama"),))] == 0

        fake.running, fake.waiting = 0, 0
        await until(client, lambda b: desired(b, "vllm-llama") == 0)


async def test_the_performance_page_shows_each_model_servers_scraped_kv_cache_usage(tmp_path: Path) -> None:
    """Issue 21: the dashboard's performance page and its twin show the KV-cache (GPU memory) usage the
    autoscaler's scraper last read from each deployment's vLLM /metrics, and say when there is none."""
    async with fleet(tmp_path) as (fake, _, client):
        fake.running = 1
        await until(client, lambda b: b["deployments"]["vllm-llama"]["upstream"]["kv_cache_usage"] == 0.4)
        twin = (await client.get("/admin/api/performance", headers=AUTH)).json()
        columns = twin["tables"]["deployments"]["columns"]
        usage = {row[0]: row[columns.index("gpu_kv_cache_usage")] for row in twin["tables"]["deployments"]["rows"]}
        assert usage["vllm-llama"] == "0.4000" and usage["replicas"] == "0.4000"
        assert usage["slow-vllm"] == "no reading yet" and usage["cold-vllm"] == "no reading yet"  # hangs; refused


async def test_each_replicas_scraped_queue_joins_its_balancing_load(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (fake, app, client):
        fake.waiting = 7
        await until(client, lambda b: b["deployments"]["replicas"]["upstream"]["waiting"] == 7)
        balancer = app.state.gateway.providers["replicas"].balancer
        assert balancer.load(balancer.endpoints[0]) == 7  # no call open: the replica's own queue only


async def test_margins_own_calls_and_tokens_are_counted_over_the_window(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (_, _, client):
        body = {"model": "chat", "messages": [{"role": "user", "content": "hello there, fleet"}]}
        answers = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(6)))
        assert all(a.status_code == 200 for a in answers)
        found = await until(client, lambda b: (b["deployments"]["vllm-llama"]["tokens_out_per_s"] or 0) > 0)
        signals = found["deployments"]["vllm-llama"]
        assert signals["calls_per_s"] > 0 and signals["tokens_in_per_s"] > 0
        assert signals["latency_p95_s"] is not None and signals["latency_p95_s"] >= 0.05  # the fake's 50 ms


async def test_a_hanging_metrics_page_times_out_is_counted_and_never_holds_a_request(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (fake, _, client):
        started = time.monotonic()
        await until(client, lambda b: b["ticks"] >= 4)
        assert fake.hung >= 1  # the page really hangs...
        assert time.monotonic() - started < 4 * (0.1 + 0.3) + 1.0  # ...and each tick gave up on it in time
        started = time.monotonic()
        answer = await client.post("/v1/chat/completions", json={"model": "slow", "messages": [
            {"role": "user", "content": "hi"}]})  # fmt: skip
        assert answer.status_code == 200 and time.monotonic() - started < 0.25  # < one scrape timeout
        samples = await metric_samples(client)
        timeouts = samples[("margin_upstream_scrapes_total", (("deployment", "slow-vllm"), ("result", "timeout")))]
        assert timeouts >= 2
        body = await keda(client)
        slow = body["deployments"]["slow-vllm"]
        # never read: reported as such, and the policy falls back to margin's own count, never "zero load"
        assert slow["upstream"]["state"] == "none" and slow["upstream"]["running"] is None
        assert slow["load_source"] == "margin"
        assert ("margin_upstream_requests_running", (("deployment", "slow-vllm"),)) not in samples
        assert samples[("margin_upstream_metrics_stale", (("deployment", "slow-vllm"),))] == 1


async def test_requests_that_found_no_endpoint_wake_a_deployment_scaled_to_zero(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (_, _, client):
        body = await until(client, lambda b: b["ticks"] >= 2)
        assert desired(body, "cold-vllm") == 0 and body["deployments"]["cold-vllm"]["reason"] == "idle"
        answer = await client.post("/v1/chat/completions", json={"model": "cold", "messages": [
            {"role": "user", "content": "wake up"}]})  # fmt: skip
        assert answer.status_code >= 500  # no replica yet (section 3 overflows it to another tier)
        body = await until(client, lambda b: desired(b, "cold-vllm") == 1)
        cold = body["deployments"]["cold-vllm"]
        assert cold["reason"] == "demand" and cold["unserved_total"] >= 1
        samples = await metric_samples(client)
        assert samples[("margin_deployment_unserved_total", (("deployment", "cold-vllm"),))] >= 1
        assert samples[("margin_upstream_scrapes_total", (("deployment", "cold-vllm"), ("result", "error")))] >= 1
        deployments = (await client.get("/admin/deployments", headers=AUTH)).json()["data"]
        listed = next(d for d in deployments if d["name"] == "cold-vllm")
        assert listed["autoscale"]["desired_replicas"] == 1


async def test_autoscale_needs_the_metrics_readers_credentials(tmp_path: Path) -> None:
    async with fleet(tmp_path) as (_, _, client):
        assert (await client.get("/autoscale")).status_code in (401, 403)


def test_bad_policies_are_clear_config_errors(tmp_path: Path) -> None:
    base = "deployments: [{name: a, provider: fake, model: m}]\nmodels: [{name: c, deployments: [a]}]\n"
    with pytest.raises(ConfigError, match="min_replicas"):
        parse_config(base + "autoscaling: {deployments: {a: {min_replicas: 5, max_replicas: 2}}}")
    with pytest.raises(ConfigError, match="target_queue_per_replica"):
        parse_config(base + "autoscaling: {deployments: {a: {target_queue_per_replica: 0}}}")
    with pytest.raises(ConfigError, match="unknown deployments: nope"):
        create_app(parse_config(base + f"data_dir: {tmp_path}\nautoscaling: {{deployments: {{nope: {{}}}}}}"))
