"""Issue 20 (1): every admin endpoint is in a real gateway's /openapi.json with its request and
response schema, real responses validate against those schemas, and a wrong body is answered with
every problem named (not "...and 1 more problems")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from margin.api.routes import build_routes
from tests.support.processes import fake_upstream, gateway


def config(upstream: str) -> str:
    return f"""
deployments:
  - {{name: main, provider: openai_compat, model: fake-main, base_url: {upstream}/v1,
     price: {{input: "1", output: "2"}}}}
models:
  - {{name: chat, deployments: [main]}}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("openapi")
    with fake_upstream() as upstream, gateway(config(upstream), tmp) as url:
        document = httpx.get(f"{url}/openapi.json", timeout=10)
        assert document.status_code == 200
        yield url, document.json()


def admin_routes() -> set[tuple[str, str]]:
    return {
        (route.path, method.lower())
        for route in build_routes()
        if route.path.startswith("/admin")
        for method in route.methods or ()
        if method != "HEAD"
    }


def check(document: dict[str, Any], path: str, method: str, response: httpx.Response) -> dict[str, Any]:
    """`response` has the documented status and validates against the documented schema."""
    documented = document["paths"][path][method]["responses"]
    assert str(response.status_code) in documented, (path, method, response.status_code, response.text)
    schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": document["components"]})
    return dict(response.json())


def test_every_admin_route_is_documented_with_its_schemas(served: tuple[str, dict[str, Any]]) -> None:
    _, document = served
    documented = {
        (path, method) for path, item in document["paths"].items() if path.startswith("/admin") for method in item
    }
    assert documented == admin_routes()
    for path, method in documented:
        operation = document["paths"][path][method]
        ok = next(code for code in operation["responses"] if code.startswith("2"))
        assert operation["responses"][ok]["content"]["application/json"]["schema"], (path, method)
        notice = path == "/admin/termination-notice"  # a node termination handler may hold the metrics token
        assert operation["security"] == [{"adminKey": []}, *([{"metricsToken": []}] if notice else [])]
        if method == "post" and not path.endswith(("/revoke", "/reload", "/undrain")) and "verdict" not in path:
            assert "requestBody" in operation, path
    key_body = document["paths"]["/admin/keys"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    key_spec = document["components"]["schemas"][key_body["$ref"].rsplit("/", 1)[1]]
    assert {"name", "team", "user", "tags", "allowed_models", "budget"} <= set(key_spec["properties"])
    assert key_spec.get("additionalProperties") is False  # unknown fields are refused, and documented so


def test_real_admin_responses_match_their_schemas(served: tuple[str, dict[str, Any]]) -> None:
    url, document = served
    body = {"name": "documented", "team": "search", "tags": ["env:test"]}
    jsonschema.validate(body, {"$ref": "#/components/schemas/KeySpec", "components": document["components"]})
    created = check(document, "/admin/keys", "post", httpx.post(f"{url}/admin/keys", json=body, timeout=10))
    key_id = created["key_id"]
    check(document, "/admin/keys", "get", httpx.get(f"{url}/admin/keys", timeout=10))
    rotated = httpx.post(f"{url}/admin/keys/{key_id}/rotate", json={"grace_s": 5}, timeout=10)
    check(document, "/admin/keys/{key_id}/rotate", "post", rotated)
    check(document, "/admin/budgets/status", "get", httpx.get(f"{url}/admin/budgets/status", timeout=10))
    check(document, "/admin/deployments", "get", httpx.get(f"{url}/admin/deployments", timeout=10))
    spend = httpx.get(f"{url}/admin/spend", params={"since": "1h", "by": "team"}, timeout=10)
    check(document, "/admin/spend", "get", spend)
    chat = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
        headers={"authorization": f"Bearer {rotated.json()['key']}"},
        timeout=10,
    )
    assert chat.status_code == 200, chat.text
    request_id = chat.headers["x-request-id"]
    detail = httpx.get(f"{url}/admin/requests/{request_id}", timeout=10)
    deadline = time.monotonic() + 10
    while detail.status_code == 404 and time.monotonic() < deadline:  # the writer is a moment behind
        time.sleep(0.05)
        detail = httpx.get(f"{url}/admin/requests/{request_id}", timeout=10)
    assert check(document, "/admin/requests/{request_id}", "get", detail)["team"] == "search"
    listed = check(document, "/admin/requests", "get", httpx.get(f"{url}/admin/requests?team=search", timeout=10))
    assert [item["request_id"] for item in listed["data"]] == [request_id]
    missing = httpx.get(f"{url}/admin/requests/none-such", timeout=10)
    check(document, "/admin/requests/{request_id}", "get", missing)
    invalidated = httpx.post(f"{url}/admin/cache/invalidate", json={"model": "chat"}, timeout=10)
    check(document, "/admin/cache/invalidate", "post", invalidated)
    check(document, "/admin/keys/{key_id}/revoke", "post", httpx.post(f"{url}/admin/keys/{key_id}/revoke", timeout=10))


def test_a_wrong_body_names_every_problem(served: tuple[str, dict[str, Any]]) -> None:
    url, _ = served
    wrong = httpx.post(f"{url}/admin/keys", json={"team": "not a name!", "budgett": 5, "tags": "x"}, timeout=10)
    assert wrong.status_code == 400
    error = wrong.json()["error"]
    message = error["message"]
    assert message.startswith("3 problems: ") and "more problems" not in message
    for field in ("team: String should match pattern", "budgett: Extra inputs are not permitted", "tags: "):
        assert field in message, message
    assert error["param"] in {"team", "budgett", "tags"}
    secret = httpx.post(f"{url}/admin/keys", json={"name": "chatty"}, timeout=10).json()["key"]
    chat = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot", "n": 0},
        headers={"authorization": f"Bearer {secret}"},
        timeout=10,
    )
    assert chat.status_code == 400, chat.text
    message = chat.json()["error"]["message"]
    assert message.startswith("2 problems: ") and "temperature: " in message and "n: " in message, message
