"""Drains shared by several gateway replicas over a real PostgreSQL (docs/deploy.md, "Spot drain"):
a termination notice taken by replica A drains the deployment on replica B within
`limits.key_cache_s` (B's new requests overflow to the next tier, labelled), a replica restarted
afterwards keeps the drain, an undrain on B restores both; the state gauge on /metrics and the
audit rows (GET /admin/audit?kind=drain) on every replica; and scale_to_zero's idle_after_s in
/autoscale (0 replicas once idle, although the window still counts calls)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import openai

from tests.support.postgres import postgres_server
from tests.support.processes import fake_upstream, gateway

ADMIN = "sk-admin-shared-drains-test-00001"
TOKEN = "metrics-token-shared-drains-00001"
AUTH = {"authorization": f"Bearer {ADMIN}"}


def config(gpu: str, api: str, database: str) -> str:
    return f"""
cache: {{enabled: false}}
server: {{admin_key: {ADMIN}, metrics_token: {TOKEN}}}
database: {{url: "{database}"}}
limits: {{key_cache_s: 1}}
autoscaling: {{interval_s: 0.2, window_s: 600, deployments: {{gpu: {{}}}}}}
deployments:
  - {{name: gpu, provider: openai_compat, model: fake-gpu, base_url: {gpu}/v1, cost_rank: 1,
     price: {{input: "0.10", output: "0.20"}}, retry: {{max_retries: 0}}, scale_to_zero: {{idle_after_s: 5}}}}
  - {{name: api, provider: openai_compat, model: fake-api, base_url: {api}/v1, cost_rank: 3,
     price: {{input: "5", output: "15"}}}}
models:
  - name: auto
    tiers:
      - {{name: self, deployments: [gpu]}}
      - {{name: api, deployments: [api]}}
    routing: {{default_tier: self}}
"""


def ask(url: str) -> tuple[str, str | None, str | None]:
    """(deployment that answered, x-margin-overflow, x-margin-fallback-reason)."""
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    h = raw.headers
    return h["x-margin-deployment"], h.get("x-margin-overflow"), h.get("x-margin-fallback-reason")


def state(url: str) -> str:
    """The deployment's state on that replica, read from its /metrics gauge."""
    page = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10).text
    on = [line for line in page.splitlines()
          if line.startswith('margin_deployment_standby_state{deployment="gpu"') and line.endswith(" 1.0")]  # fmt: skip
    assert len(on) == 1, on
    return on[0].split('state="')[1].split('"')[0]


def desired(url: str) -> dict[str, object]:
    body = httpx.get(f"{url}/autoscale", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10).json()
    gpu: dict[str, object] = body["deployments"]["gpu"]
    return gpu


def eventually(check: Callable[[], bool], within: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "not within the refresh interval"
        time.sleep(0.1)
    return time.monotonic() - started


def test_a_notice_to_one_replica_drains_every_replica_and_survives_a_restart(tmp_path: Path) -> None:
    with ExitStack() as stack:
        pg = stack.enter_context(postgres_server())
        gpu = stack.enter_context(fake_upstream())
        api = stack.enter_context(fake_upstream())
        yaml = config(gpu, api, pg.create_database(f"drains_{uuid.uuid4().hex[:10]}"))

        for name in ("a", "b"):
            (tmp_path / name).mkdir()
        a = stack.enter_context(gateway(yaml, tmp_path / "a", timeout=60))
        b_process = ExitStack()  # B is restarted below
        stack.callback(b_process.close)
        b = b_process.enter_context(gateway(yaml, tmp_path / "b", timeout=60))
        assert ask(b)[0] == "gpu" and state(b) == "ready"
        notice = {"deployment": "gpu", "reason": "spot-interruption", "not_after": time.time() + 120}
        taken = httpx.post(f"{a}/admin/termination-notice", json=notice, headers={"authorization": f"Bearer {TOKEN}"})
        assert taken.status_code == 200 and taken.json()["state"] == "drained"
        took = eventually(lambda: state(b) == "drained", within=5.0)
        assert took < 3.0  # limits.key_cache_s is 1 s
        assert ask(b) == ("api", "self->api", "drained")  # B's new requests overflow, labelled

        b_process.close()  # B restarts: its memory is gone, the drain is not
        b = b_process.enter_context(gateway(yaml, tmp_path / "b", timeout=60))
        assert state(b) == "drained" and ask(b)[0] == "api"

        back = httpx.post(f"{b}/admin/deployments/gpu/undrain", headers=AUTH)
        assert back.status_code == 200 and back.json()["state"] != "drained"
        eventually(lambda: state(a) != "drained", within=5.0)  # cold: A has had no request (idle_after_s)
        assert ask(a)[0] == "gpu" and ask(b)[0] == "gpu"
        assert state(a) == state(b) == "ready"
        eventually(lambda: desired(a)["reason"] == "recent_request" or desired(a)["reason"] == "demand", within=3.0)
        assert desired(a)["desired_replicas"] == 1
        # idle_after_s (5 s) without a request: 0 replicas although the 600 s window still counts calls
        eventually(lambda: desired(a)["reason"] == "idle_after", within=15.0)
        assert desired(a)["desired_replicas"] == 0 and float(desired(a)["calls_per_s"]) > 0  # type: ignore[arg-type]
        assert state(a) == "cold"

        rows = httpx.get(f"{a}/admin/audit", params={"kind": "drain"}, headers=AUTH).json()["data"]
        assert [(r["id"], r["action"]) for r in rows] == [("gpu", "delete"), ("gpu", "create")]
        assert rows[1]["actor"] == "metrics-token" and rows[1]["after"]["via"] == "termination-notice"
        assert rows[0]["actor"].startswith("admin:") and ADMIN not in rows[0]["actor"]  # the key's prefix only
        assert rows[1]["after"]["reason"] == "spot-interruption" and rows[0]["before"]["reason"] == "spot-interruption"
        bad = httpx.get(f"{a}/admin/audit", params={"kind": "drains"}, headers=AUTH)
        assert bad.status_code == 400 and "drain" in bad.json()["error"]["message"]
