"""The dashboard's spend explorer, performance, budgets and cache pages (issue 21, section 1 items
2-5), in process over a real SQLite ledger whose row scan fails (figures come from rollups only):
each page shows exactly its JSON twin's figures, the CSV export holds the twin's table, a viewer of
team `search` finds no figure of team `ads` on any page, twin or CSV, and bad input is a 4xx that
says what is wrong, never a 500."""

from __future__ import annotations

import asyncio
import csv
import html
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from margin.storage.batches import BatchRecord
from tests.support.dashboard import (
    ADMIN,
    FIGURE,
    NOW,
    PAGES,
    dashboard_app,
    logged_in,
    twin_path,
    twin_value,
    viewer_session,
)
from tests.support.ledger_rows import make_row

BUDGETS = """
budgets:
  - {{scope: global, limit_usd: 100, window: month}}
  - {{scope: "team:*", limit_usd: 40, window: month}}
"""
ADS_SECRETS = ("ads", "7.75", "ads-only-model", "1.5")  # team ads' name, spend, model and cost


@asynccontextmanager
async def dashboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The app over a real ledger; keys of teams search (a viewer and a client key) and ads, with
    rows of both teams on 10-11 December; yields the client and the keys' secrets and ids."""
    async with dashboard_app(tmp_path, monkeypatch, BUDGETS) as opened:
        client, store, app = opened.client, opened.store, opened.app
        keys: dict[str, str] = {}
        for name, team, tags in (("viewer", "search", ["dashboard:viewer"]), ("search", "search", []),
                                 ("ads", "ads", [])):  # fmt: skip
            body = {"name": f"{name}-key", "team": team, "tags": tags, "user": f"{team}-person"}
            created = await client.post("/admin/keys", json=body, headers={"authorization": f"Bearer {ADMIN}"})
            assert created.status_code == 201, created.text
            keys[name], keys[f"{name}_id"] = created.json()["key"], created.json()["key_id"]
        day = datetime(2026, 12, 10, 9, tzinfo=UTC).timestamp()
        await store.write([
            make_row(1, ts=day, team="search", key_id=keys["search_id"], user="search-person",
                     cost_total=Decimal("1.25"), latency_ms=200.0, output=200, tokens_per_s=100.0,
                     extra={"cache": "miss"}),
            make_row(2, ts=day + 3600, team="search", key_id=keys["search_id"], user="search-person",
                     cost_total=Decimal("0.5"), cache_result="exact", saved_cost=Decimal("0.25")),
            make_row(3, ts=day + 86400, team="ads", key_id=keys["ads_id"], user="ads-person", tags=("ads-tag",),
                     cost_total=Decimal("7.75"), model="ads-only-model", tier=3, deployment="big", output=300,
                     tokens_per_s=150.0, extra={"cache": "bypass; sampled"}),
            make_row(4, ts=day + 86400, team="ads", key_id=keys["ads_id"], user="ads-person", status="error",
                     cost_total=Decimal(0), deployment="big", latency_ms=900.0),
        ])  # fmt: skip
        batches = app.state.gateway.batches.store
        for team in ("search", "ads"):
            await batches.add_batch(BatchRecord(
                batch_id=f"batch_{team}", owner=keys[f"{team}_id"], api="openai", endpoint="/v1/chat/completions",
                input_file_id="file_x", completion_window="24h", status="completed", created_at=NOW - 3600,
                expires_at=NOW + 86400, principal={}, total=3, completed=2, failed=1, cost=Decimal("0.125"),
            ))  # fmt: skip
        yield client, keys


def test_every_page_shows_exactly_its_json_twins_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with dashboard(tmp_path, monkeypatch) as (client, _):
            session = {"cookie": f"margin_session={await logged_in(client)}"}
            for page in PAGES:
                shown = await client.get(f"/dashboard/{page}", headers=session)
                twin = await client.get(twin_path(page), headers={"authorization": f"Bearer {ADMIN}"})
                assert shown.status_code == 200 and twin.status_code == 200, (page, shown.text[:300], twin.text)
                figures = FIGURE.findall(shown.text)
                body = twin.json()
                assert len(figures) >= len(body["summary"]), page
                for path, text in figures:
                    assert html.unescape(text) == twin_value(body, path), (page, path)
                shown_paths = {path for path, _ in figures}
                for name, spec in body["tables"].items():  # every cell of every table is on the page
                    for i, row in enumerate(spec["rows"]):
                        assert {f"tables.{name}.rows.{i}.{j}" for j in range(len(row))} <= shown_paths, page

    asyncio.run(run())


def test_the_figures_come_from_the_rollups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with dashboard(tmp_path, monkeypatch) as (client, _):
            bearer = {"authorization": f"Bearer {ADMIN}"}
            by_team = (await client.get("/admin/api/spend?by=team", headers=bearer)).json()
            assert by_team["tables"]["groups"]["rows"][0][:2] == ["ads", 2]
            assert by_team["summary"]["spend_usd"] == "9.500000" and by_team["summary"]["requests"] == 4
            assert by_team["tables"]["series"]["columns"] == ["day", "ads", "search"]
            assert by_team["tables"]["series"]["rows"] == [
                ["2026-12-10T00:00:00+00:00", "0.000000", "1.750000"],
                ["2026-12-11T00:00:00+00:00", "7.750000", "0.000000"],
            ]
            by_user = (await client.get("/admin/api/spend?by=user&team=search", headers=bearer)).json()
            assert [row[0] for row in by_user["tables"]["groups"]["rows"]] == ["search-person"]
            cache = (await client.get("/admin/api/cache", headers=bearer)).json()
            assert cache["summary"] == {"requests": 4, "cache_hits": 1, "hit_rate": "0.2500", "saved_usd": "0.250000",
                                        "hits_exact": 1, "hits_semantic": 0, "hits_coalesced": 0, "cache_misses": 1,
                                        "bypassed": 1}  # fmt: skip
            outcomes = {row[0]: row[1:] for row in cache["tables"]["outcomes"]["rows"]}
            assert outcomes["bypass_sampled"] == [1, "0.2500"] and outcomes["bypass_media"] == [0, "0.0000"]
            assert cache["tables"]["series"]["rows"] == [
                ["2026-12-10T00:00:00+00:00", 1, 0, 0, 1, 0], ["2026-12-11T00:00:00+00:00", 0, 0, 0, 0, 1],
            ]  # fmt: skip
            performance = (await client.get("/admin/api/performance?since=7d&period=day", headers=bearer)).json()
            rows = {row[0]: row for row in performance["tables"]["deployments"]["rows"]}
            assert rows["big"][1:3] == [2, "0.5000"] and rows["small"][1:3] == [2, "0.0000"]
            # tokens/s: output tokens over generation time (the cache hit and the error measured none)
            assert rows["big"][-2:] == [150.0, "not exposed"] and rows["small"][-2:] == [100.0, "not exposed"]
            assert performance["summary"]["tokens_per_s"] == 125.0  # 500 tokens in 4 s
            series = {(row[0][:10], row[1]): row[-1] for row in performance["tables"]["series"]["rows"]}
            assert series == {("2026-12-10", "small"): 100.0, ("2026-12-11", "big"): 150.0}
            activity = (await client.get("/admin/api/rollouts", headers=bearer)).json()
            assert sorted(row[0] for row in activity["tables"]["batches"]["rows"]) == ["batch_ads", "batch_search"]
            assert activity["tables"]["batches"]["rows"][0][-6:] == [3, 2, 1, 0, 0, "0.125000"]
            assert activity["tables"]["rollouts"]["rows"] == [] and activity["summary"]["batches_running"] == 0
            budgets = (await client.get("/admin/api/budgets", headers=bearer)).json()
            scopes = [row[0] for row in budgets["tables"]["budgets"]["rows"]]
            assert {"global", "team:search", "team:ads"} <= set(scopes)

    asyncio.run(run())


def test_the_csv_export_holds_the_twins_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with dashboard(tmp_path, monkeypatch) as (client, _):
            bearer = {"authorization": f"Bearer {ADMIN}"}
            for table in ("groups", "series"):
                exported = await client.get(f"/dashboard/spend.csv?by=key&table={table}", headers=bearer)
                assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
                twin = (await client.get("/admin/api/spend?by=key", headers=bearer)).json()["tables"][table]
                expected = [twin["columns"], *[["" if v is None else str(v) for v in row] for row in twin["rows"]]]
                assert list(csv.reader(io.StringIO(exported.text))) == expected

    asyncio.run(run())


def test_a_team_viewer_sees_no_figure_of_another_team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with dashboard(tmp_path, monkeypatch) as (client, keys):
            answer = await viewer_session(client, keys["viewer"])
            session = {"cookie": f"margin_session={answer.cookies['margin_session']}"}
            bearer = {"authorization": f"Bearer {keys['viewer']}"}
            secrets = (*ADS_SECRETS, keys["ads_id"], "ads-person")
            seen = 0
            for page in (*PAGES, "spend.csv?by=key", "spend.csv?by=user&table=series"):
                for url, headers in ((f"/dashboard/{page}", session), (twin_path(page), bearer)):
                    if "csv" in page and url.startswith("/admin"):
                        continue
                    got = await client.get(url, headers=headers)
                    assert got.status_code in (200, 403), (url, got.status_code, got.text)
                    seen += got.status_code == 200
                    for secret in secrets:
                        assert secret not in got.text, (url, secret)
            assert seen >= 12
            own = (await client.get("/admin/api/spend?by=key", headers=bearer)).json()
            assert [row[0] for row in own["tables"]["groups"]["rows"]] == [keys["search_id"]]
            assert own["summary"]["spend_usd"] == "1.750000" and own["scope"] == {"team": "search"}
            budgets = (await client.get("/admin/api/budgets", headers=bearer)).json()
            assert [row[0] for row in budgets["tables"]["budgets"]["rows"]] == ["team:search"]
            cache = (await client.get("/admin/api/cache", headers=bearer)).json()  # ads' bypass is not search's
            assert [cache["summary"][k] for k in ("hits_exact", "cache_misses", "bypassed")] == [1, 1, 0]
            assert cache["tables"]["series"]["rows"] == [["2026-12-10T00:00:00+00:00", 1, 0, 0, 1, 0]]
            activity = (await client.get("/admin/api/rollouts", headers=bearer)).json()
            assert [row[0] for row in activity["tables"]["batches"]["rows"]] == ["batch_search"]
            assert set(activity["tables"]) == {"batches"}  # rollouts and evals mix every team
            for refused in ("/admin/api/spend?by=model", "/admin/api/spend?team=ads", "/admin/api/performance",
                            "/admin/api/spend?by=org"):  # fmt: skip
                got = await client.get(refused, headers=bearer)
                assert got.status_code == 403 and "ads" not in got.text.replace("team=ads", ""), refused

    asyncio.run(run())


BAD = {
    "spend?by=planet": "by='planet' is not one of",
    "spend?by=batch": "no batch dimension",
    "spend?by=rollout": "no rollout dimension",
    "spend?since=2026-12-10&until=2026-12-01": "window is empty",
    "spend?since=2020-01-01": "longer than 400 days",
    "spend?since=60d&period=hour": "more than 400 hours",
    "spend?since=yesterday-ish": "cannot read",
    "spend?period=minute": "period='minute'",
    "spend?colour=red": "unknown parameter 'colour'",
    "spend?team=nobody": "no key belongs to that team",
    "spend?org=nowhere": "no key belongs to that org",
    "spend?by=model&team=search": "filters apply to",
    "spend?by=team&by=key": "more than once",
    "performance?team=search": "unknown parameter 'team'",
    "budgets?since=7d": "unknown parameter 'since'",
    "cache?until=1999-01-01": "window is empty",
}


def test_bad_input_is_a_clear_4xx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with dashboard(tmp_path, monkeypatch) as (client, _):
            session = {"cookie": f"margin_session={await logged_in(client)}"}
            bearer = {"authorization": f"Bearer {ADMIN}"}
            for page, message in BAD.items():
                for url, headers in ((f"/dashboard/{page}", session), (twin_path(page), bearer)):
                    got = await client.get(url, headers=headers)
                    assert got.status_code == 400, (url, got.status_code, got.text)
                    assert message in got.json()["error"]["message"], (url, got.text)
            csv_table = await client.get("/dashboard/spend.csv?table=everything", headers=bearer)
            assert csv_table.status_code == 400
            client.cookies.clear()
            assert (await client.get("/dashboard/spend")).status_code == 303  # no session: to the login form
            assert (await client.get("/admin/api/spend")).status_code == 401
            wrong = await client.get("/admin/api/cache", headers={"authorization": "Bearer sk-not-a-key-000"})
            assert wrong.status_code == 403

    asyncio.run(run())
