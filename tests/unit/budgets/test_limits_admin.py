"""Key administration over HTTP, the keyless embedded default, secrets kept out of every output,
`GET /admin/budgets/status`, the 429 variant of a refusal, and threshold alerts to a webhook."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from limits_support import ADMIN, serve

from margin.storage import open_ledger_store

AUTH = {"authorization": f"Bearer {ADMIN}"}


async def test_key_lifecycle_over_the_admin_api(tmp_path: Path) -> None:
    async with serve(tmp_path) as gw:
        assert (await gw.chat(None, model="cheap")).status_code == 200  # no key exists yet: keyless
        key, view = await gw.create_key(name="ci", team="search", tags=["env:prod"])
        assert view["prefix"] == key[:16] + "..." and view["status"] == "active"
        listed = (await gw.client.get("/admin/keys", headers=AUTH)).json()["data"]
        assert [k["key_id"] for k in listed] == [view["key_id"]]
        assert "key" not in listed[0] and key not in json.dumps(listed) and "hash" not in json.dumps(listed)
        assert (await gw.chat(None, model="cheap")).status_code == 401  # a key exists: keys are required
        assert (await gw.chat(key, model="cheap")).status_code == 200
        rotated = await gw.client.post(f"/admin/keys/{view['key_id']}/rotate", headers=AUTH)
        new = rotated.json()["key"]
        assert rotated.json()["key_id"] == view["key_id"] and new != key
        assert (await gw.chat(key, model="cheap")).status_code == 401
        assert (await gw.chat(new, model="cheap")).status_code == 200
        revoked = await gw.client.post(f"/admin/keys/{view['key_id']}/revoke", headers=AUTH)
        assert revoked.json()["status"] == "revoked"
        refused = await gw.chat(new, model="cheap")
        assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
        again = await gw.client.post(f"/admin/keys/{view['key_id']}/rotate", headers=AUTH)
        assert again.status_code == 404
        bad = await gw.client.post("/admin/keys", json={"team": "has space"}, headers=AUTH)
        assert bad.status_code == 400


async def test_secrets_never_reach_logs_errors_metrics_or_the_ledger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serve(tmp_path) as gw:
        key, _ = await gw.create_key(budget={"limit_usd": "0.000001"})
        good, view = await gw.create_key()
        seen = [await gw.chat(good, model="cheap"), await gw.chat(key, model="cheap")]  # ok, then 402
        wrong = key[:-4] + "AAAA"
        seen.append(await gw.chat(wrong, model="cheap"))
        seen.append(await gw.client.get("/admin/keys", headers={"authorization": f"Bearer {key}"}))
        metrics = (await gw.client.get("/metrics", headers=AUTH)).text  # /metrics needs the admin key
        assert "margin_requests_total" in metrics
    texts = [r.text for r in seen] + [str(dict(r.headers)) for r in seen] + [metrics, caplog.text]
    ledger = open_ledger_store(f"sqlite:///{tmp_path}/margin.db", tmp_path)
    rows = [row async for row in ledger.query_rows(0, 4e9)]
    await ledger.close()
    texts.append(repr(rows))
    assert rows and any(row.key_id == view["key_id"] for row in rows)
    for secret in (key, good, wrong, ADMIN):
        assert not any(secret in text for text in texts)
    assert [r.status_code for r in seen] == [200, 402, 401, 403]


async def test_admin_budgets_lists_spend_reserved_limit_and_reset(tmp_path: Path) -> None:
    async with serve(tmp_path, "budgets: [{scope: 'team:*', limit_usd: 2, window: day}]") as gw:
        budget = {"limit_tokens": 1000, "window": "rolling", "hours": 6}
        key, view = await gw.create_key(team="search", budget=budget)
        assert (await gw.chat(key, model="cheap", max_tokens=3)).status_code == 200
        await gw.settled()
        data = (await gw.client.get("/admin/budgets/status", headers=AUTH)).json()["data"]
        by_scope = {(e["scope"], e["kind"]): e for e in data}
        team = by_scope[("team:search", "usd")]
        assert team["limit"] == "2" and team["spent"] == "0.012" and team["reserved"] == "0"
        assert team["reset_at"].endswith("T00:00:00Z") and team["window"] == "day@UTC"
        own = by_scope[(f"key:{view['key_id']}", "tokens")]
        assert own["spent"] == 12 and own["limit"] == 1000 and own["window"] == "roll21600s"
        assert ("team:default", "usd") in by_scope  # the anonymous principal's team


async def test_budget_refusal_can_be_a_429_that_sdks_do_not_retry(tmp_path: Path) -> None:
    config = "budgets: [{scope: global, limit_usd: 0}]\nlimits: {on_budget_exceeded: 429}"
    async with serve(tmp_path, config) as gw:
        response = await gw.chat(None, model="cheap")
        assert response.status_code == 429 and response.headers["x-should-retry"] == "false"
        assert response.json()["error"]["code"] == "budget_exceeded"


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, object]] = []
    fail_first = True

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if Hook.fail_first:
            Hook.fail_first = False
            self.send_response(500)
        else:
            Hook.received.append(json.loads(body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def webhook() -> Iterator[str]:
    Hook.received, Hook.fail_first = [], True
    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


async def test_threshold_alerts_go_to_the_webhook_once_and_are_retried(tmp_path: Path, webhook: str) -> None:
    config = f"""
budgets: [{{scope: 'key:*', limit_usd: "0.05", thresholds: [0.2, 0.5]}}]
limits: {{alerts: {{webhook_url: "{webhook}"}}}}
"""
    async with serve(tmp_path, config) as gw:
        key, view = await gw.create_key()
        for _ in range(3):
            assert (await gw.chat(key, model="cheap", max_tokens=5)).status_code == 200  # $0.012 each
            await gw.settled()
        await asyncio.sleep(1.1)  # spend is read at most once a second per budget
        sink = gw.pipeline.limits.limiter.on_settled[0].__self__.alerts  # type: ignore[union-attr]
        await sink.stop(drain_s=5)
    labels = [(a["scope"], a["threshold"]) for a in Hook.received]
    assert labels == [(f"key:{view['key_id']}", "0.2"), (f"key:{view['key_id']}", "0.5")]
    assert Hook.received[0]["type"] == "margin.budget_alert" and Hook.received[0]["limit"] == "0.05"
