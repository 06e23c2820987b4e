"""Issue 20 (2): a request explained after the fact, through a real `margin serve`, the fake upstream,
the openai SDK, `GET /admin/requests[/{id}]` and the installed `margin requests` command: the ledger
keeps what the response headers said (rule, cascade, fallback and why, cache decision) and lists
requests by team and status, a page at a time."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.cli import run_margin
from tests.support.processes import fake_upstream, gateway

HARD = "incomprehensibilities notwithstanding"  # long words: the logprob check rejects the cheap answer


def config(upstream: str) -> str:
    def deployment(name: str, model: str, cost_rank: int, price: str) -> str:
        return f"""  - name: {name}
    provider: openai_compat
    model: {model}
    base_url: {upstream}/v1
    cost_rank: {cost_rank}
    price: {price}
"""

    return f"""
deployments:
{deployment("cheap", "fake-cheap", 1, '{input: "0.15", output: "0.60"}')}
{deployment("premium", "fake-premium", 3, '{input: "5", output: "15"}')}
{deployment("gone", "fake-gone", 1, '{input: "1", output: "2"}')}
{deployment("backup", "fake-backup", 1, '{input: "1", output: "2"}')}
models:
  - name: auto
    tiers:
      - {{name: cheap, deployments: [cheap]}}
      - {{name: premium, deployments: [premium]}}
    routing:
      rules:
        - {{name: tools, when: {{tools: true}}, tier: premium}}
      cascade: {{checks: [logprob], min_mean_logprob: -0.3}}
  - {{name: chain, deployments: [gone, backup]}}
"""


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("requests")
    with fake_upstream("--fault", "fake-gone=status=503") as upstream, gateway(config(upstream), tmp) as url:
        yield url, tmp


@pytest.fixture(scope="module")
def team_key(served: tuple[str, Path]) -> str:
    created = httpx.post(f"{served[0]}/admin/keys", json={"name": "explained", "team": "search"}, timeout=10)
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def explained(url: str, request_id: str, attempts: int = 1, timeout: float = 10) -> dict[str, Any]:
    """`GET /admin/requests/{id}` once the background writer has written the request's rows."""
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{url}/admin/requests/{request_id}", timeout=10)
        if response.status_code == 200 and len(response.json()["attempt_rows"]) >= attempts:
            return dict(response.json())
        assert response.status_code in (200, 404), response.text
        if time.monotonic() > deadline:
            raise AssertionError(f"request {request_id} never reached the ledger: {response.text}")
        time.sleep(0.05)


def test_a_rule_decision_is_kept_as_the_header_told_it(served: tuple[str, Path]) -> None:
    url, _ = served
    raw = client(url).chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "call a tool"}],
        tools=TOOLS,  # type: ignore[arg-type]
    )
    assert raw.headers["x-margin-route"] == "rules;tier=premium;deployment=premium;rule=tools"
    found = explained(url, raw.headers["x-request-id"])
    assert found["route_policy"] == "rules" and found["deployment"] == "premium" and found["status"] == "ok"
    assert found["decision"]["route"] == raw.headers["x-margin-route"]
    assert found["decision"]["route_reason"] == "rule=tools"
    assert Decimal(found["cost_usd"]) == Decimal(raw.headers["x-margin-cost-usd"])


def test_an_escalated_cascade_shows_both_attempts_and_why(served: tuple[str, Path]) -> None:
    url, _ = served
    raw = client(url).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": HARD}]
    )
    assert raw.headers["x-margin-cascade"] == "escalated"
    found = explained(url, raw.headers["x-request-id"], attempts=2)
    decision = found["decision"]
    assert decision["route_cascade"] == "escalated"
    assert decision["route_cascade_check"] == raw.headers["x-margin-cascade-check"]
    assert decision["route_chosen"] == "cheap" and decision["route_tier"] == "premium"
    assert [a["deployment"] for a in found["attempt_rows"]] == ["cheap", "premium"]
    assert sum(Decimal(a["cost_usd"]) for a in found["attempt_rows"]) == Decimal(found["cost_usd"])
    assert Decimal(found["cost_usd"]) == Decimal(raw.headers["x-margin-cost-usd"])


def test_a_fallback_is_kept_with_its_reason(served: tuple[str, Path]) -> None:
    url, _ = served
    raw = client(url).chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "hello"}]
    )
    assert raw.headers["x-margin-fallback-from"] == "gone"
    found = explained(url, raw.headers["x-request-id"], attempts=2)
    assert found["decision"]["fallback_from"] == "gone"
    assert found["decision"]["fallback_reason"] == raw.headers["x-margin-fallback-reason"]
    *failed, answered = found["attempt_rows"]  # the 503 may be retried on `gone` before falling back
    assert failed and all((a["deployment"], a["status"], a["is_final"]) == ("gone", "error", False) for a in failed)
    assert (answered["deployment"], answered["status"], answered["is_final"]) == ("backup", "ok", True)
    assert found["attempts"] == len(found["attempt_rows"]) == int(raw.headers["x-margin-attempts"])


def test_a_cache_hit_and_its_miss_are_both_explained(served: tuple[str, Path]) -> None:
    url, _ = served
    ids, decisions = [], []
    for _ in range(2):
        raw = client(url).chat.completions.with_raw_response.create(
            model="chain", messages=[{"role": "user", "content": "cache me"}], temperature=0
        )
        ids.append(raw.headers["x-request-id"])
        decisions.append(raw.headers["x-margin-cache"])
    assert decisions == ["miss", "exact"]
    assert [explained(url, rid)["decision"]["cache"] for rid in ids] == ["miss", "exact"]
    assert explained(url, ids[1])["cache_result"] == "exact"


def test_unknown_ids_and_bad_filters_are_answered_clearly(served: tuple[str, Path]) -> None:
    url, _ = served
    missing = httpx.get(f"{url}/admin/requests/no-such-request", timeout=10)
    assert missing.status_code == 404 and "no-such-request" in missing.json()["error"]["message"]
    bad = httpx.get(f"{url}/admin/requests", params={"status": "happy"}, timeout=10)
    assert bad.status_code == 400 and "status must be one of" in bad.json()["error"]["message"]


def test_the_cli_lists_a_team_page_by_page_and_shows_one(served: tuple[str, Path], team_key: str) -> None:
    url, tmp = served
    sent = []
    for i in range(3):
        raw = client(url, team_key).chat.completions.with_raw_response.create(
            model="chain", messages=[{"role": "user", "content": f"team request {i}"}]
        )
        sent.append(raw.headers["x-request-id"])
    for rid in sent:
        explained(url, rid)
    seen: list[str] = []
    cursor: list[str] = []
    for _ in range(3):
        args = ["--team", "search", "--since", "1h", "--limit", "2", "--format", "json", *cursor]
        page_run = run_margin("requests", "list", *args, "--config", tmp / "margin.yaml", data_dir=tmp / "data")
        assert page_run.returncode == 0, page_run.stderr
        page = json.loads(page_run.stdout)
        assert all(item["team"] == "search" for item in page["data"])
        seen += [item["request_id"] for item in page["data"]]
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    assert seen == sent[::-1]  # newest first, each once, across pages
    shown = run_margin("requests", "show", sent[0], "--config", tmp / "margin.yaml", data_dir=tmp / "data")
    assert shown.returncode == 0, shown.stderr
    assert "fallback_from" in shown.stdout and "gone" in shown.stdout and "[answered]" in shown.stdout
    assert "team           search" in shown.stdout
    as_json = run_margin("requests", "show", sent[0], "--format", "json", "--config", tmp / "margin.yaml",
                         data_dir=tmp / "data")  # fmt: skip
    assert json.loads(as_json.stdout) == explained(url, sent[0])
    errors = run_margin("requests", "list", "--status", "error", "--format", "json", "--config",
                        tmp / "margin.yaml", data_dir=tmp / "data")  # fmt: skip
    assert errors.returncode == 0 and json.loads(errors.stdout)["data"] == []  # every request was answered
