"""Issue 20 (1): teams, budgets and rate limits as objects managed over `/admin/teams`,
`/admin/budgets`, `/admin/limits` on a real `margin serve` (real HTTP on loopback, the admin key),
applied live without a restart, audited, paged, checked against /openapi.json; config-declared
objects read-only and reloaded by `POST /admin/reload` and by SIGHUP; and two replicas sharing a real
PostgreSQL, where a budget created through one is enforced by the other.

Prices make a request's worst case $0.05 and its actual cost $0.03 (tests/e2e/limits_cluster.py)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.e2e.limits_cluster import ANSWER, REQUEST
from tests.support.postgres import postgres_server
from tests.support.processes import fake_upstream, gateway, gateway_process

ADMIN = "admin-key-for-the-teams-api-test"
AUTH = {"authorization": f"Bearer {ADMIN}"}


def config(upstream: str, extra: str = "", database: str | None = None) -> str:
    db = f'database: {{url: "{database}"}}\n' if database else ""
    return f"""
deployments:
  - {{name: fake-metered, provider: openai_compat, model: fake-metered, base_url: {upstream}/v1,
     price: {{input: "1000", output: "1000"}}}}
models:
  - {{name: metered, deployments: [fake-metered]}}
auth: required
server: {{admin_key: env:MARGIN_ADMIN_KEY}}
cache: {{enabled: false}}
limits: {{key_cache_s: 1}}
{db}teams:
  - {{name: platform, description: declared in the file, users: [ops]}}
{extra}"""


def admin(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{url}{path}", headers=AUTH, timeout=10, **kwargs)


def create_key(url: str, **spec: Any) -> tuple[str, str]:
    response = admin(url, "POST", "/admin/keys", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["key"], response.json()["key_id"]


def chat(url: str, key: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json=REQUEST, headers={"authorization": f"Bearer {key}"},
                      timeout=10)  # fmt: skip


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the refresh interval"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, Any]]:
    tmp = tmp_path_factory.mktemp("teams")
    with fake_upstream("--content", ANSWER) as upstream:
        env = {"MARGIN_ADMIN_KEY": ADMIN}
        with gateway_process(config(upstream), tmp, env=env, timeout=60) as (url, process):
            yield url, tmp, process


def test_a_team_budget_created_over_the_api_applies_at_once_and_changes_live(served: tuple[str, Path, Any]) -> None:
    url, _, _ = served
    key, key_id = create_key(url, name="search-bot", team="default")
    team = admin(url, "POST", "/admin/teams", json={"name": "search", "keys": [key_id]})
    assert team.status_code == 201, team.text
    assert team.json() | {"keys": [key_id], "source": "api", "read_only": False} == team.json()
    assert chat(url, key).status_code == 200  # no budget yet
    eventually(lambda: len(admin(url, "GET", "/admin/requests", params={"team": "search"}).json()["data"]) == 1)
    budget = admin(url, "POST", "/admin/budgets", json={"scope": "team:search", "limit_usd": "0.1", "window": "day"})
    assert budget.status_code == 201, budget.text
    budget_id = budget.json()["id"]
    assert budget_id.startswith("bud_") and budget.json()["limit_usd"] == "0.1"
    # The $0.03 already spent counts (caught up from the ledger): $0.07 left holds one $0.05 worst case.
    statuses = [chat(url, key).status_code for _ in range(3)]
    assert statuses == [200, 402, 402], statuses
    refusal = chat(url, key).json()["error"]
    assert refusal["scope"] == "team:search" and refusal["code"] == "budget_exceeded"  # the key counts as search's
    raised = admin(url, "PATCH", f"/admin/budgets/{budget_id}", json={"limit_usd": "1"})
    assert raised.status_code == 200 and raised.json()["version"] == 2 and raised.json()["window"] == "day"
    assert chat(url, key).status_code == 200  # the same counter (spent so far kept), a higher limit
    assert admin(url, "DELETE", f"/admin/budgets/{budget_id}").json()["deleted"] is True
    assert admin(url, "GET", f"/admin/budgets/{budget_id}").status_code == 404


def test_rate_limit_objects_apply_live(served: tuple[str, Path, Any]) -> None:
    url, _, _ = served
    key, _ = create_key(url, name="limited", team="rl")
    limit = admin(url, "POST", "/admin/limits", json={"scope": "team:rl", "requests_per_minute": 2})
    assert limit.status_code == 201, limit.text
    assert [chat(url, key).status_code for _ in range(3)] == [200, 200, 429]
    assert (
        admin(url, "PATCH", f"/admin/limits/{limit.json()['id']}", json={"requests_per_minute": 10}).status_code == 200
    )
    assert chat(url, key).status_code == 200


def test_errors_are_in_the_openai_envelope(served: tuple[str, Path, Any]) -> None:
    url, _, _ = served
    missing = admin(url, "GET", "/admin/teams/no-such-team")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "invalid_request_error"
    assert "no-such-team" in missing.json()["error"]["message"]
    assert admin(url, "POST", "/admin/teams", json={"name": "dup"}).status_code == 201
    duplicate = admin(url, "POST", "/admin/teams", json={"name": "dup"})
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "conflict"
    wrong = admin(url, "POST", "/admin/budgets", json={"scope": "team search", "limit_usd": -1, "windoww": "day"})
    assert wrong.status_code == 422, wrong.text
    message = wrong.json()["error"]["message"]
    assert message.startswith("3 problems: "), message
    for problem in ("scope: ", "limit_usd: ", "windoww: Extra inputs are not permitted"):
        assert problem in message, message
    both = admin(url, "POST", "/admin/budgets", json={"scope": "team:x", "limit_usd": 1, "limit_tokens": 5})
    assert both.status_code == 422 and "exactly one of limit_usd or limit_tokens" in both.json()["error"]["message"]
    assert admin(url, "POST", "/admin/budgets", json=[1]).status_code in (400, 422)
    assert admin(url, "GET", "/admin/teams?limit=0").status_code == 400
    rename = admin(url, "PATCH", "/admin/teams/dup", json={"name": "other"})
    assert rename.status_code == 422 and rename.json()["error"]["param"] == "name"
    assert httpx.get(f"{url}/admin/teams", timeout=10).status_code == 401  # the admin key only
    _, key_id = create_key(url, name="in-two")
    assert admin(url, "PATCH", "/admin/teams/dup", json={"keys": [key_id]}).status_code == 200
    clash = admin(url, "POST", "/admin/teams", json={"name": "second", "keys": [key_id]})
    assert clash.status_code == 409 and "'dup'" in clash.json()["error"]["message"]


def test_pagination_and_the_audit_trail(served: tuple[str, Path, Any]) -> None:
    url, _, _ = served
    names = [f"page-{n}" for n in range(5)]
    for name in names:
        assert admin(url, "POST", "/admin/teams", json={"name": name}).status_code == 201
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = admin(url, "GET", "/admin/teams", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["data"]) <= 2
        seen += [t["id"] for t in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen) and set(names) <= set(seen) and "platform" in seen and len(seen) == len(set(seen))
    admin(url, "PATCH", "/admin/teams/page-0", json={"users": ["ana"], "description": "x"})
    admin(url, "DELETE", "/admin/teams/page-0")
    trail = admin(url, "GET", "/admin/audit", params={"kind": "team", "id": "page-0"}).json()["data"]
    assert [c["action"] for c in trail] == ["delete", "update", "create"]
    assert all(c["actor"].startswith("admin:admin-") and ADMIN not in c["actor"] for c in trail)
    assert trail[1]["before"]["users"] == [] and trail[1]["after"]["users"] == ["ana"] and trail[0]["after"] is None
    first = admin(url, "GET", "/admin/audit", params={"limit": 1}).json()
    older = admin(url, "GET", "/admin/audit", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert older["data"][0]["seq"] < first["data"][0]["seq"]
    assert admin(url, "GET", "/admin/audit", params={"kind": "teams"}).status_code == 400


def test_config_objects_are_read_only_and_reload_applies_the_file(served: tuple[str, Path, Any]) -> None:
    url, tmp, process = served
    platform = admin(url, "GET", "/admin/teams/platform").json()
    assert platform["source"] == "config" and platform["read_only"] is True and platform["users"] == ["ops"]
    refused = admin(url, "PATCH", "/admin/teams/platform", json={"users": []})
    assert refused.status_code == 409 and "config file" in refused.json()["error"]["message"]
    assert admin(url, "DELETE", "/admin/teams/platform").status_code == 409
    key, _ = create_key(url, name="ops-bot", user="ops")  # placed in team platform by its user
    assert chat(url, key).status_code == 200
    path = tmp / "margin.yaml"
    text = path.read_text()
    path.write_text(text + 'budgets:\n  - {scope: "team:platform", limit_usd: "0.01", window: month}\n')
    reloaded = admin(url, "POST", "/admin/reload")
    assert reloaded.status_code == 200, reloaded.text
    assert [(c["action"], c["kind"], c["actor"]) for c in reloaded.json()["changes"]] == [
        ("create", "budget", "config")
    ]
    assert reloaded.json()["restart_needed"] == []
    assert chat(url, key).status_code == 402
    taken = admin(url, "POST", "/admin/budgets", json={"scope": "team:platform", "limit_usd": 5, "window": "month"})
    assert taken.status_code == 409  # the file declares that budget: no silent overwrite either way
    path.write_text(text + "teams_typo: []\n")
    broken = admin(url, "POST", "/admin/reload")
    assert broken.status_code == 422 and "teams_typo" in broken.json()["error"]["message"]
    assert chat(url, key).status_code == 402  # a bad file changes nothing
    path.write_text(text)
    process.send_signal(signal.SIGHUP)
    eventually(lambda: chat(url, key).status_code == 200)
    assert process.poll() is None  # SIGHUP reloads, it does not stop the gateway
    trail = admin(url, "GET", "/admin/audit", params={"kind": "budget", "limit": 2}).json()["data"]
    assert [(c["action"], c["actor"]) for c in trail] == [("delete", "config"), ("create", "config")]


def test_responses_match_openapi(served: tuple[str, Path, Any]) -> None:
    url, _, _ = served
    document = httpx.get(f"{url}/openapi.json", timeout=10).json()

    def check(path: str, method: str, response: httpx.Response) -> None:
        documented = document["paths"][path][method]["responses"]
        assert str(response.status_code) in documented, (path, method, response.text)
        schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), {**schema, "components": document["components"]})

    created = admin(url, "POST", "/admin/limits", json={"scope": "user:doc", "concurrency": 3})
    check("/admin/limits", "post", created)
    check("/admin/limits", "get", admin(url, "GET", "/admin/limits"))
    check("/admin/limits/{object_id}", "patch", admin(url, "PATCH", f"/admin/limits/{created.json()['id']}",
                                                     json={"concurrency": 4}))  # fmt: skip
    check("/admin/teams/{object_id}", "get", admin(url, "GET", "/admin/teams/platform"))
    check("/admin/teams/{object_id}", "get", admin(url, "GET", "/admin/teams/nope"))
    check("/admin/budgets", "get", admin(url, "GET", "/admin/budgets"))
    check("/admin/audit", "get", admin(url, "GET", "/admin/audit"))
    check("/admin/limits/{object_id}", "delete", admin(url, "DELETE", f"/admin/limits/{created.json()['id']}"))
    check("/admin/reload", "post", admin(url, "POST", "/admin/reload"))


def test_a_budget_created_on_one_replica_is_enforced_by_another(tmp_path: Path) -> None:
    with ExitStack() as stack:
        pg = stack.enter_context(postgres_server())
        upstream = stack.enter_context(fake_upstream("--content", ANSWER))
        database = pg.create_database(f"teams_{uuid.uuid4().hex[:10]}")
        urls = []
        for n in range(2):
            folder = tmp_path / f"replica{n}"
            folder.mkdir()
            urls.append(stack.enter_context(gateway(config(upstream, database=database), folder,
                                                    env={"MARGIN_ADMIN_KEY": ADMIN}, timeout=60)))  # fmt: skip
        a, b = urls
        key, _ = create_key(a, name="shared", team="shared")
        assert chat(b, key).status_code == 200  # $0.03, before any budget
        eventually(lambda: len(admin(a, "GET", "/admin/requests", params={"team": "shared"}).json()["data"]) == 1)
        budget = admin(a, "POST", "/admin/budgets", json={"scope": "team:shared", "limit_usd": "0.12"})
        assert budget.status_code == 201, budget.text
        started = time.monotonic()

        def b_enforces() -> bool:
            return any(s["scope"] == "team:shared" for s in admin(b, "GET", "/admin/budgets/status").json()["data"])

        eventually(b_enforces)  # B's rules now hold it: read within limits.key_cache_s (1 s)
        assert time.monotonic() - started < 3
        # Caught up to the ledger's $0.03: $0.09 left holds one $0.05 worst case, then $0.06 one more.
        assert [chat(b, key).status_code for _ in range(4)] == [200, 200, 402, 402]
        assert admin(b, "GET", f"/admin/budgets/{budget.json()['id']}").json()["limit_usd"] == "0.12"
        spent = next(s for s in admin(a, "GET", "/admin/budgets/status").json()["data"] if s["scope"] == "team:shared")
        assert Decimal(str(spent["spent"])) == Decimal("0.09")  # one counter for both replicas, ledger's past included
        admin(a, "DELETE", f"/admin/budgets/{budget.json()['id']}")
        eventually(lambda: chat(b, key).status_code == 200)
