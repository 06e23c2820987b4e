"""Issue 20 (1), the command line: `margin teams|budgets|limits` (the installed console script) change
the database a running `margin serve` reads, which applies them without a restart; `margin audit`
shows who changed what (actor `cli`); `margin reload --url` makes the gateway read its config file
again; config-declared objects are refused with the file named."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.limits_cluster import ANSWER, REQUEST
from tests.e2e.test_teams_api import ADMIN, AUTH, config
from tests.support.cli import run_margin
from tests.support.processes import fake_upstream, gateway


def margin(*args: str, data: Path, ok: bool = True) -> Any:
    result = run_margin(*args, data_dir=data, env={"MARGIN_ADMIN_KEY": ADMIN})
    assert (result.returncode == 0) == ok, (args, result.stdout, result.stderr)
    return json.loads(result.stdout) if ok else result.stderr


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the refresh interval"
        time.sleep(0.1)


def test_cli_changes_apply_to_a_running_gateway(tmp_path: Path) -> None:
    with fake_upstream("--content", ANSWER) as upstream:
        text = config(upstream)
        with gateway(text, tmp_path, env={"MARGIN_ADMIN_KEY": ADMIN}, timeout=60) as url:
            path, data = tmp_path / "margin.yaml", tmp_path / "data"
            created = httpx.post(f"{url}/admin/keys", json={"name": "cli", "team": "ml"}, headers=AUTH, timeout=10)
            key = {"authorization": f"Bearer {created.json()['key']}"}

            def status() -> int:
                return httpx.post(f"{url}/v1/chat/completions", json=REQUEST, headers=key, timeout=10).status_code

            assert status() == 200
            team = margin("teams", "create", "--name", "ml", "--user", "default", "--config", str(path), data=data)
            assert team["source"] == "api" and team["users"] == ["default"]
            limit = margin("limits", "create", "--scope", "team:ml", "--rpm", "1", "--config", str(path), data=data)
            eventually(lambda: status() == 429)  # the gateway read it within limits.key_cache_s
            margin("limits", "update", limit["id"], "--rpm", "1000", "--config", str(path), data=data)
            eventually(lambda: status() == 200)
            listed = margin("teams", "list", "--limit", "1", "--config", str(path), data=data)
            assert [t["id"] for t in listed["data"]] == ["ml"] and listed["next_cursor"] == "ml"
            rest = margin("teams", "list", "--cursor", "ml", "--config", str(path), data=data)
            assert [(t["id"], t["source"]) for t in rest["data"]] == [("platform", "config")]
            refused = margin("teams", "delete", "platform", "--config", str(path), data=data, ok=False)
            assert "declared in the config file" in refused and "(409)" in refused
            wrong = margin("budgets", "create", "--scope", "team ml", "--usd", "-1", "--config", str(path),
                           data=data, ok=False)  # fmt: skip
            assert "2 problems: scope: " in wrong and "limit_usd: " in wrong and "(422)" in wrong
            missing = margin("budgets", "show", "bud_nope", "--config", str(path), data=data, ok=False)
            assert "bud_nope" in missing and "(404)" in missing
            margin("limits", "delete", limit["id"], "--config", str(path), data=data)
            trail = margin("audit", "--kind", "limit", "--config", str(path), data=data)["data"]
            assert [(c["action"], c["actor"]) for c in trail] == [
                ("delete", "cli"),
                ("update", "cli"),
                ("create", "cli"),
            ]
            assert trail[1]["before"]["requests_per_minute"] == 1 and trail[1]["after"]["requests_per_minute"] == 1000
            path.write_text(text + 'budgets:\n  - {scope: "team:ml", limit_tokens: 10, window: day}\n')
            reloaded = margin("reload", "--url", url, data=data)
            assert [(c["action"], c["kind"]) for c in reloaded["changes"]] == [("create", "budget")]
            assert status() == 402
            shown = margin("budgets", "list", "--config", str(path), data=data)["data"]
            assert [(b["scope"], b["source"]) for b in shown] == [("team:ml", "config")]
