"""Issue 24, section 3: a self-hosted tier scaled to zero and a spot drain, over real HTTP.

The self-hosted tier's server is `margin fake-upstream --cold-for-s`: nothing listens on its port
for that long (connections refused, as a Service with no ready pod), then it serves. While it is
cold every request overflows to the API tier (labelled, billed at the API tier's price), one wake
webhook goes to a loopback receiver, and once the server answers health checks traffic returns.
Drain: a stream open on the self-hosted tier finishes while new requests go to the API tier."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.support.ledger_rows import stored_row
from tests.support.processes import fake_upstream, free_port, gateway, wait_http

ADMIN = "sk-admin-scale-to-zero-test-0001"
TOKEN = "metrics-token-scale-to-zero-0001"
AUTH = {"authorization": f"Bearer {ADMIN}"}
COLD_FOR_S = 12.0
API_IN, API_OUT = Decimal("5"), Decimal("15")  # the API tier's $ per million tokens


class Wakes:
    """A loopback receiver of the wake webhook: every POST body, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        wakes = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                wakes.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/wake"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


def config(gpu: str, api: str) -> str:
    return f"""
cache: {{enabled: false}}
server: {{admin_key: {ADMIN}, metrics_token: {TOKEN}}}
deployments:
  - name: gpu
    provider: openai_compat
    model: fake-gpu
    base_url: {gpu}/v1
    cost_rank: 1
    price: {{input: "0.10", output: "0.20"}}
    retry: {{max_retries: 0}}
    scale_to_zero:
      wake: webhook
      webhook_url: env:TEST_WAKE_URL
      cold_start_s: {COLD_FOR_S}
      probe_interval_s: 0.2
  - name: api
    provider: openai_compat
    model: fake-api
    base_url: {api}/v1
    cost_rank: 3
    price: {{input: "{API_IN}", output: "{API_OUT}"}}
models:
  - name: auto
    tiers:
      - {{name: self, deployments: [gpu]}}
      - {{name: api, deployments: [api]}}
    routing: {{default_tier: self}}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Wakes, str]]:
    tmp = tmp_path_factory.mktemp("scale-to-zero")
    wakes = Wakes()
    wakes.thread.start()
    port = free_port()
    gpu = f"http://127.0.0.1:{port}"
    cold = subprocess.Popen(  # not waited for: it is cold
        [sys.executable, "-m", "margin", "fake-upstream", "--port", str(port), "--cold-for-s", str(COLD_FOR_S),
         "--chunks", "12", "--chunk-delay-ms", "150"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with fake_upstream() as api, gateway(config(gpu, api), tmp, env={"TEST_WAKE_URL": wakes.url}) as url:
            yield url, tmp / "data" / "margin.db", wakes, gpu
    finally:
        cold.terminate()
        cold.wait(10)
        wakes.server.shutdown()


def ask(url: str, text: str, *, stream: bool = False) -> tuple[str, str | None, str, openai.types.CompletionUsage]:
    """(deployment that answered, x-margin-overflow, request id, usage) for one SDK request."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": text}]
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model="auto",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        ) as streamed:
            last = list(streamed.parse())[-1]
            assert last.usage is not None
            h = streamed.headers
            return h["x-margin-deployment"], h.get("x-margin-overflow"), h["x-request-id"], last.usage
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=messages)
    usage = raw.parse().usage
    assert usage is not None
    h = raw.headers
    return h["x-margin-deployment"], h.get("x-margin-overflow"), h["x-request-id"], usage


def standby(url: str, name: str) -> dict[str, object]:
    data = httpx.get(f"{url}/admin/deployments", headers=AUTH).json()["data"]
    view: dict[str, object] = next(d for d in data if d["name"] == name)["standby"]
    return view


def test_a_cold_tier_overflows_wakes_once_and_takes_traffic_back(served: tuple[str, Path, Wakes, str]) -> None:
    url, db, wakes, gpu = served
    answers: list[tuple[str, str | None, str, openai.types.CompletionUsage]] = []
    deadline = time.monotonic() + COLD_FOR_S + 40
    while time.monotonic() < deadline:  # every request must succeed (an exception fails the test)
        answers.append(ask(url, f"question {len(answers)}", stream=len(answers) % 2 == 1))
        if answers[-1][0] == "gpu":
            break
        time.sleep(0.2)
    overflowed = [a for a in answers if a[0] == "api"]
    assert answers[-1][0] == "gpu", "traffic never came back to the self-hosted tier"
    assert len(overflowed) >= 3 and all(a[1] == "self->api" for a in overflowed)
    assert [ask(url, "after")[0] for _ in range(3)] == ["gpu"] * 3  # it stays back
    for _, _, request_id, usage in overflowed[:3]:  # billed at the API tier's price
        stored_row(db, request_id)  # waits for the writer
        rows = _rows(db, request_id)
        paid = [r for r in rows if r["status"] == "ok"]
        assert len(paid) == 1 and paid[0]["deployment"] == "api", [dict(r) for r in rows]
        expected = (usage.prompt_tokens * API_IN + usage.completion_tokens * API_OUT) / 1_000_000
        assert Decimal(paid[0]["cost_total"]) == expected
        refused = [r for r in rows if r["status"] != "ok"]  # only the request that found it cold called it
        assert [(r["deployment"], Decimal(r["cost_total"])) for r in refused] == (
            [("gpu", Decimal(0))] if request_id == overflowed[0][2] else []
        )
    assert len(wakes.bodies) == 1 and wakes.bodies[0]["deployment"] == "gpu"
    assert wakes.bodies[0]["event"] == "wake"
    view = standby(url, "gpu")
    assert view["state"] == "warm" and view["cold_periods"] == 1 and view["wakes_sent"] == 1
    shown = httpx.get(f"{url}/admin/deployments", headers=AUTH).text + (db.parent.parent / "gateway.log").read_text()
    assert wakes.url.split("//")[1] not in shown  # the webhook URL is a secret: never shown or logged
    assert view["skipped_cold"] == len(overflowed) - 1  # the first found it cold by failing to connect
    wait_http(f"{gpu}/v1/models")


def _rows(db: Path, request_id: str) -> list:  # type: ignore[type-arg]
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(
            "SELECT * FROM ledger_attempts WHERE request_id = ? ORDER BY attempt_index", (request_id,)
        ).fetchall()


def test_a_drained_tier_finishes_its_stream_while_new_requests_go_elsewhere(
    served: tuple[str, Path, Wakes, str],
) -> None:
    url, _, _, gpu = served
    wait_http(f"{gpu}/v1/models")
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with client.chat.completions.with_streaming_response.create(
        model="auto", messages=[{"role": "user", "content": "a long story"}], stream=True
    ) as raw:
        assert raw.headers["x-margin-deployment"] == "gpu"
        chunks = raw.parse()
        first = next(iter(chunks))
        drained = httpx.post(f"{url}/admin/deployments/gpu/drain", headers=AUTH, json={"reason": "spot"})
        assert drained.status_code == 200 and drained.json()["state"] == "drained"
        during = ask(url, "while draining")
        rest = list(chunks)
    assert during[0] == "api" and during[1] == "self->api"
    assert first.choices and len(rest) >= 11  # every chunk of the open stream came
    assert rest[-1].choices[0].finish_reason == "stop"
    assert standby(url, "gpu")["drained"]["reason"] == "spot"  # type: ignore[index]
    undrained = httpx.post(f"{url}/admin/deployments/gpu/undrain", headers=AUTH)
    assert undrained.json()["state"] == "warm" and ask(url, "back")[0] == "gpu"


def test_a_termination_notice_drains_with_the_metrics_token(served: tuple[str, Path, Wakes, str]) -> None:
    url = served[0]
    notice = {"deployment": "gpu", "reason": "spot-interruption", "not_after": time.time() + 120}
    refused = httpx.post(f"{url}/admin/termination-notice", json=notice, headers={"authorization": "Bearer nope"})
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
    bad = httpx.post(f"{url}/admin/termination-notice", json={"reason": "x"}, headers=AUTH)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "deployment"
    unknown = httpx.post(f"{url}/admin/termination-notice", json={"deployment": "nope"}, headers=AUTH)
    assert unknown.status_code == 404
    ok = httpx.post(f"{url}/admin/termination-notice", json=notice, headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["drained"]["by"] == "metrics-token"
    answer = httpx.post(f"{url}/v1/chat/completions", json={"model": "auto", "messages": _say("interrupted")})
    assert answer.headers["x-margin-deployment"] == "api" and answer.headers["x-margin-fallback-reason"] == "drained"
    spec = httpx.get(f"{url}/openapi.json").json()
    body = spec["paths"]["/admin/termination-notice"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["deployment"]
    answered = spec["paths"]["/admin/termination-notice"]["post"]["responses"]["200"]["content"]
    jsonschema.validate(ok.json(), {**answered["application/json"]["schema"], "components": spec["components"]})
    drain = spec["paths"]["/admin/deployments/{name}/drain"]["post"]
    assert drain["requestBody"]["content"]["application/json"]["schema"]["properties"]["reason"]["maxLength"] == 200
    back = httpx.post(f"{url}/admin/deployments/gpu/undrain", headers=AUTH)
    assert back.json()["state"] == "warm" and back.json()["replicas"][0]["drained"] is False


def test_a_notice_for_the_last_replica_drains_the_deployment(served: tuple[str, Path, Wakes, str]) -> None:
    url, gpu = served[0], served[3]
    host = gpu.split("//")[1]
    missing = httpx.post(f"{url}/admin/deployments/gpu/drain", headers=AUTH, json={"endpoint": "10.9.9.9:1"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "endpoint"
    notice = {"deployment": "gpu", "endpoint": host}
    drained = httpx.post(f"{url}/admin/termination-notice", json=notice, headers={"authorization": f"Bearer {TOKEN}"})
    assert drained.json()["state"] == "drained" and drained.json()["replicas"][0]["drained"] is True
    assert ask(url, "elsewhere")[0] == "api"
    undrained = httpx.post(f"{url}/admin/deployments/gpu/undrain", headers=AUTH, json={"endpoint": host})
    assert undrained.json()["state"] == "warm" and ask(url, "home")[0] == "gpu"


def test_a_batch_key_waits_for_the_cold_tier_while_an_interactive_one_overflows(
    tmp_path: Path,
) -> None:
    """`wait_max_s: {interactive: 0, batch: 60}`: an interactive request overflows at once; a batch
    key's request made while the tier is cold waits, and the self-hosted tier answers it."""
    port = free_port()
    gpu = f"http://127.0.0.1:{port}"
    yaml = config(gpu, "{api}").replace("probe_interval_s: 0.2", "probe_interval_s: 0.2\n      wait_max_s: {batch: 60}")
    yaml = yaml.replace("wake: webhook\n      webhook_url: env:TEST_WAKE_URL", "wake: none")
    cold = subprocess.Popen(
        [sys.executable, "-m", "margin", "fake-upstream", "--port", str(port), "--cold-for-s", "12"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with fake_upstream() as api, gateway(yaml.replace("{api}", api), tmp_path) as url:
            keys = {
                kind: httpx.post(f"{url}/admin/keys", headers=AUTH, json={"name": kind, "endpoint_class": kind}).json()
                for kind in ("interactive", "batch")
            }
            interactive = _client(url, keys["interactive"]["key"])
            first = interactive.chat.completions.with_raw_response.create(model="auto", messages=_say("hi"))
            assert first.headers["x-margin-deployment"] == "api" and first.headers["x-margin-overflow"] == "self->api"
            started = time.monotonic()
            waited = _client(url, keys["batch"]["key"]).chat.completions.with_raw_response.create(
                model="auto", messages=_say("no hurry")
            )
            assert waited.headers["x-margin-deployment"] == "gpu" and "x-margin-overflow" not in waited.headers
            assert time.monotonic() - started > 1.0  # it waited for the server to listen
            assert standby(url, "gpu")["waited"] == 1
    finally:
        cold.terminate()
        cold.wait(10)


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=90)


def _say(text: str) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": text}]
