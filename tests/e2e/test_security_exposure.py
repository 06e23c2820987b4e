"""What an unauthenticated caller or another tenant can see (issue 16, item 4), over real HTTP.

A gateway with `auth: required` (create_app, served by uvicorn on loopback in this process) sits in
front of a recording upstream, also on loopback, which keeps every body it is sent, counts its
health probes, and can answer an error that echoes the credential margin sent it. Each test is
the reproduction of one finding:

- /metrics needed no key and labelled spend by team;
- /v1/models needed no key and listed models the key may not use;
- /readyz probed every upstream on each call and named every deployment to anyone;
- credential- and routing-shaped request fields (api_key, api_base, extra_headers) reached the
  upstream body;
- org `a/b` + team `c` and org `a` + team `b/c` shared one cache partition;
- upstream error bodies reached the client with the keys in them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from margin.app import create_app
from margin.config import parse_config
from tests.support.loopback import serving

ADMIN = "security-admin-key"
METRICS_TOKEN = "prometheus-scrape-token"
UPSTREAM_KEY = "sk-upstream-credential-0123456789abcdef"
ADMIN_AUTH = {"authorization": f"Bearer {ADMIN}"}


@dataclass
class Recorded:
    """What the recording upstream saw."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    probes: Counter[str] = field(default_factory=Counter)


def recording_upstream(seen: Recorded) -> Starlette:
    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        seen.bodies.append(body)
        if body.get("model") == "leaky-model":  # an upstream gateway that echoes what it was sent
            message = f"Incorrect API key provided: {UPSTREAM_KEY}. Sent: {request.headers['authorization']}"
            return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=401)
        return JSONResponse(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        )

    async def embeddings(request: Request) -> Response:
        seen.bodies.append(orjson.loads(await request.body()))
        return JSONResponse(
            {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
             "model": "e", "usage": {"prompt_tokens": 1, "total_tokens": 1}}
        )  # fmt: skip

    async def messages(request: Request) -> Response:
        seen.bodies.append(orjson.loads(await request.body()))
        return JSONResponse(
            {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
             "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
             "usage": {"input_tokens": 3, "output_tokens": 1}}
        )  # fmt: skip

    async def models(request: Request) -> Response:
        await asyncio.sleep(0.05)  # a probe takes a while: concurrent /readyz calls overlap it
        seen.probes[request.url.path] += 1
        return JSONResponse({"object": "list", "data": []})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


def gateway_config(tmp_path: Path, upstream: str, server: str) -> str:
    priced = 'price: {input: "1", output: "1"}'
    relay = f"provider: openai_compat, base_url: '{upstream}/v1', api_key: {UPSTREAM_KEY}, {priced}"
    claude = f"provider: anthropic, base_url: '{upstream}', api_key: {UPSTREAM_KEY}, {priced}"
    return f"""
data_dir: {tmp_path}
auth: required
server: {{{server}}}
cache: {{enabled: true, backend: memory, scope: team}}
deployments:
  - {{name: small, provider: fake, model: small, {priced}}}
  - {{name: relay, model: relay-model, {relay}, capabilities: {{embeddings: true}}}}
  - {{name: relay-open, model: relay-model, {relay}, passthrough: {{allow: [api_base], deny: [repetition_penalty]}}}}
  - {{name: leaky, model: leaky-model, {relay}}}
  - {{name: claude-relay, model: claude-x, {claude}}}
models:
  - {{name: cheap, aliases: [cheap-alias], deployments: [small]}}
  - {{name: premium, deployments: [small]}}
  - {{name: relay, deployments: [relay]}}
  - {{name: relay-open, deployments: [relay-open]}}
  - {{name: leaky, deployments: [leaky]}}
  - {{name: claude, deployments: [claude-relay]}}
"""


@dataclass
class Gateway:
    url: str
    http: httpx.AsyncClient
    seen: Recorded

    async def key(self, **spec: Any) -> str:
        created = await self.http.post("/admin/keys", json=spec, headers=ADMIN_AUTH)
        assert created.status_code == 201, created.text
        secret: str = created.json()["key"]
        return secret

    async def chat(self, key: str, model: str, **extra: Any) -> httpx.Response:
        body = {"model": model, "messages": [{"role": "user", "content": "hello"}], **extra}
        return await self.http.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})


async def _gateway(tmp_path: Path, server: str) -> AsyncIterator[Gateway]:
    seen = Recorded()
    async with serving(recording_upstream(seen)) as upstream:
        config = parse_config(gateway_config(tmp_path, upstream, server))
        async with serving(create_app(config)) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Gateway(url, http, seen)


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    server = f"admin_key: {ADMIN}, metrics_token: {METRICS_TOKEN}, health_probe_interval_s: 30"
    async for served in _gateway(tmp_path, server):
        yield served


# --- /metrics -------------------------------------------------------------------------------------


async def test_metrics_need_the_metrics_token_or_the_admin_key(gw: Gateway) -> None:
    key = await gw.key(org="acme", team="secret-research")
    assert (await gw.chat(key, "cheap")).status_code == 200  # spend labelled team="secret-research"
    anonymous = await gw.http.get("/metrics")
    assert anonymous.status_code == 401 and "secret-research" not in anonymous.text
    as_client = await gw.http.get("/metrics", headers={"authorization": f"Bearer {key}"})
    assert as_client.status_code == 403 and "secret-research" not in as_client.text
    wrong = await gw.http.get("/metrics", headers={"authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403
    for token in (METRICS_TOKEN, ADMIN):  # Prometheus' `authorization: {credentials: ...}` sends Bearer
        scraped = await gw.http.get("/metrics", headers={"authorization": f"Bearer {token}"})
        assert scraped.status_code == 200
        assert 'team="secret-research"' in scraped.text


async def test_without_a_metrics_token_metrics_need_the_admin_key(tmp_path: Path) -> None:
    async for gw in _gateway(tmp_path, f"admin_key: {ADMIN}"):
        assert (await gw.http.get("/metrics")).status_code == 401
        assert (await gw.http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})).status_code == 403
        assert "margin_requests_total" in (await gw.http.get("/metrics", headers=ADMIN_AUTH)).text


async def test_without_any_key_configured_metrics_answer_this_machine_only(tmp_path: Path) -> None:
    """No admin key, no metrics token: /metrics and /readyz's details are the local operator's, and
    a request relayed by a proxy (one not in server.trusted_proxies) is not local."""
    async for gw in _gateway(tmp_path, "health_probe_interval_s: 30"):
        assert (await gw.http.get("/metrics")).status_code == 200
        assert "deployments" in (await gw.http.get("/readyz")).json()
        relayed = {"x-forwarded-for": "203.0.113.9"}
        assert (await gw.http.get("/metrics", headers=relayed)).status_code == 403
        assert (await gw.http.get("/readyz", headers=relayed)).json() == {"status": "ready"}


# --- /v1/models -----------------------------------------------------------------------------------


async def test_model_listing_needs_a_key_and_shows_only_the_keys_models(gw: Gateway) -> None:
    anonymous = await gw.http.get("/v1/models")
    assert anonymous.status_code == 401 and "premium" not in anonymous.text and "relay" not in anonymous.text
    assert (await gw.http.get("/v1/models/cheap")).status_code == 401
    key = await gw.key(allowed_models=["cheap"])
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0) as client:
        listed = [m.id async for m in client.models.list()]
        assert sorted(listed) == ["cheap", "cheap-alias"]
        assert (await client.models.retrieve("cheap-alias")).id == "cheap-alias"
        with pytest.raises(openai.NotFoundError):  # exists, but not for this key: the same 404 as a missing model
            await client.models.retrieve("premium")
    everything = await gw.key()
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=everything, max_retries=0) as client:
        assert {m.id async for m in client.models.list()} >= {"cheap", "premium", "relay", "claude"}


# --- /readyz --------------------------------------------------------------------------------------


async def test_readiness_probes_each_upstream_at_a_bounded_rate_and_names_nothing_publicly(gw: Gateway) -> None:
    answers = await asyncio.gather(*(gw.http.get("/readyz") for _ in range(20)))
    probed = sum(gw.seen.probes.values())
    assert probed == 4  # relay, relay-open, leaky (GET /v1/models) and claude-relay: once each, shared by 20 calls
    assert {a.status_code for a in answers} == {200}
    assert all(a.json() == {"status": "ready"} for a in answers)  # no deployment names without the admin key
    again = await asyncio.gather(*(gw.http.get("/readyz") for _ in range(20)))
    assert {a.status_code for a in again} == {200} and sum(gw.seen.probes.values()) == probed  # within the interval
    detailed = (await gw.http.get("/readyz", headers=ADMIN_AUTH)).json()
    assert detailed["deployments"] == {n: True for n in ("small", "relay", "relay-open", "leaky", "claude-relay")}
    client_key = await gw.key()
    as_client = (await gw.http.get("/readyz", headers={"authorization": f"Bearer {client_key}"})).json()
    assert as_client == {"status": "ready"}


# --- what a request body can steer upstream -------------------------------------------------------

STEERING = {
    "api_key": "sk-attacker-0000000000",
    "api_base": "http://203.0.113.9/v1",
    "extra_headers": {"x-route": "elsewhere"},
    "Custom_LLM_Provider": "azure",
    "aws_secret_access_key": "x",
}


async def test_credential_and_routing_fields_never_reach_the_upstream(gw: Gateway) -> None:
    key = await gw.key()
    forwarded = {"top_k": 5, "repetition_penalty": 1.1, "prompt_cache_key": "p1", "max_tokens": 9}
    assert (await gw.chat(key, "relay", **STEERING, **forwarded)).status_code == 200
    sent = gw.seen.bodies[-1]
    assert not set(STEERING) & set(sent)
    assert {k: sent[k] for k in forwarded} == forwarded  # fields margin does not know still pass
    assert (await gw.chat(key, "relay-open", **STEERING, repetition_penalty=1.1)).status_code == 200
    sent = gw.seen.bodies[-1]  # the deployment allows api_base and denies repetition_penalty
    assert sent["api_base"] == STEERING["api_base"] and "repetition_penalty" not in sent and "api_key" not in sent
    embedded = await gw.http.post(
        "/v1/embeddings",
        json={"model": "relay", "input": "hi", "api_key": "sk-attacker-1", "api_base": "http://x", "dimensions": 2},
        headers={"authorization": f"Bearer {key}"},
    )
    assert embedded.status_code == 200
    assert "api_key" not in gw.seen.bodies[-1] and "api_base" not in gw.seen.bodies[-1]
    assert gw.seen.bodies[-1]["dimensions"] == 2


async def test_an_anthropic_clients_extra_fields_are_filtered_too(gw: Gateway) -> None:
    key = await gw.key()
    async with anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0) as client:
        await client.messages.create(
            model="claude",
            max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"api_key": "sk-attacker-2", "extra_headers": {"a": "b"}, "container": "c1"},
        )
    sent = gw.seen.bodies[-1]
    assert "api_key" not in sent and "extra_headers" not in sent
    assert sent["container"] == "c1" and sent["model"] == "claude-x"


# --- tenants' cache partitions --------------------------------------------------------------------


async def test_org_and_team_names_with_a_slash_are_separate_cache_partitions(gw: Gateway) -> None:
    first = await gw.key(org="a/b", team="c")
    second = await gw.key(org="a", team="b/c")
    body = {"temperature": 0}
    assert (await gw.chat(first, "cheap", **body)).headers["x-margin-cache"] == "miss"
    assert (await gw.chat(first, "cheap", **body)).headers["x-margin-cache"] == "exact"  # cached
    other = await gw.chat(second, "cheap", **body)
    assert other.status_code == 200 and other.headers["x-margin-cache"] == "miss"


# --- upstream error bodies ------------------------------------------------------------------------


async def test_an_upstream_error_that_echoes_a_key_is_redacted(gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = await gw.key()
    failed = await gw.chat(key, "leaky")
    assert failed.status_code >= 400
    message = failed.json()["error"]["message"]
    assert "upstream answered 401" in message and "[redacted]" in message
    assert UPSTREAM_KEY not in failed.text and UPSTREAM_KEY[:12] not in failed.text
    assert UPSTREAM_KEY not in caplog.text
