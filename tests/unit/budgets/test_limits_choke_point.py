"""Stage ② is the one choke point: this test walks the route table (api/routes.py build_routes) and
fails when a route that can reach an upstream model answers a spent budget with anything but a
refusal before the upstream call, or when a new route is added without being classified here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from limits_support import ADMIN, serve
from starlette.routing import Route

from margin.api.routes import build_routes

# Routes that never reach an upstream model (each with why).
NOT_MODEL_SERVING = {
    ("/v1/models", "GET"): "lists the configured models",
    ("/v1/models/{model_id:path}", "GET"): "describes one configured model",
    ("/healthz", "GET"): "liveness",
    ("/readyz", "GET"): "readiness (probes deployments' health endpoints, not models)",
    ("/metrics", "GET"): "Prometheus text",
    ("/autoscale", "GET"): "desired replicas for KEDA's metrics-api scaler (read from metrics already kept)",
    ("/openapi.json", "GET"): "the API description",
    ("/v1/feedback", "POST"): "a client's score of an answer it already received (rollout quality signal)",
    **{
        route: "batch files and objects; each batch line passes stage ② in the worker (tests/unit/batch)"
        for route in [
            ("/v1/files", "POST"),
            ("/v1/files", "GET"),
            ("/v1/files/{file_id}", "GET"),
            ("/v1/files/{file_id}", "DELETE"),
            ("/v1/files/{file_id}/content", "GET"),
            ("/v1/batches", "POST"),
            ("/v1/batches", "GET"),
            ("/v1/batches/{batch_id}", "GET"),
            ("/v1/batches/{batch_id}/cancel", "POST"),
            ("/v1/batches/{batch_id}/retry_failed", "POST"),
            ("/v1/messages/batches", "POST"),
            ("/v1/messages/batches", "GET"),
            ("/v1/messages/batches/{batch_id}", "GET"),
            ("/v1/messages/batches/{batch_id}/cancel", "POST"),
            ("/v1/messages/batches/{batch_id}/results", "GET"),
        ]
    },
}
CHAT = [{"role": "user", "content": "hello world"}]
# Every model-serving route, with the bodies that must be refused (streamed and not).
BODIES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("/v1/chat/completions", "POST"): [
        {"model": "chat", "messages": CHAT},
        {"model": "chat", "messages": CHAT, "stream": True},
    ],
    ("/v1/completions", "POST"): [
        {"model": "chat", "prompt": "hello world"},
        {"model": "chat", "prompt": "hello world", "stream": True},
    ],
    ("/v1/embeddings", "POST"): [{"model": "embeddings", "input": "hello world"}],
    ("/v1/messages", "POST"): [
        {"model": "chat", "max_tokens": 10, "messages": CHAT},
        {"model": "chat", "max_tokens": 10, "messages": CHAT, "stream": True},
    ],
}


def endpoints() -> list[tuple[str, str]]:
    found = []
    for route in build_routes():
        assert isinstance(route, Route)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((route.path, method))
    return found


def test_every_route_is_classified() -> None:
    unclassified = [
        f"{method} {path}"
        for path, method in endpoints()
        if not path.startswith("/admin/") and (path, method) not in NOT_MODEL_SERVING and (path, method) not in BODIES
    ]
    assert unclassified == [], (
        "new routes: add each to BODIES (it must pass stage ②, pipeline.limits.admit) "
        "or to NOT_MODEL_SERVING with the reason it never reaches a model"
    )


async def test_every_model_serving_route_passes_the_choke_point(tmp_path: Path) -> None:
    async with serve(tmp_path, "budgets: [{scope: global, limit_usd: '0.000001'}]") as gw:
        for path, method in endpoints():
            for body in BODIES.get((path, method), []):
                response = await gw.client.request(method, path, json=body, headers={"x-api-key": "ignored"})
                assert response.status_code == 402, (path, body, response.text)
                assert "budget_exceeded" in response.text or response.json()["error"]["type"] == "billing_error"
        assert gw.calls() == 0


@pytest.mark.parametrize("credential", ["key", "none"])
async def test_admin_routes_never_open_to_a_client_key(tmp_path: Path, credential: str) -> None:
    async with serve(tmp_path) as gw:
        key, _ = await gw.create_key()
        headers = {"authorization": f"Bearer {key}"} if credential == "key" else {}
        for path, method in endpoints():
            if path.startswith("/admin/"):
                url = path.replace("{key_id}", "key_x")
                response = await gw.client.request(method, url, headers=headers, json={})
                assert response.status_code in (401, 403), (method, path, response.status_code)
        ok = await gw.client.get("/admin/keys", headers={"authorization": f"Bearer {ADMIN}"})
        assert ok.status_code == 200
