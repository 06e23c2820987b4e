"""The Overview page and its JSON twin (issue 21, sections 1-2), in process over a real SQLite ledger:
the page shows exactly the twin's figures, computed from rollups (a ledger whose row scan fails
still serves both), the login form sets a Secure HttpOnly SameSite=Strict session cookie behind a
CSRF token, and nothing opens the dashboard without the admin key or a live session."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from margin.charts import asset_bytes, asset_names
from margin.dashboard.session import SESSION_TTL_S, SessionSigner
from margin.storage.ledger_row import LedgerRow
from tests.support.dashboard import ADMIN, NOW, dashboard_app, logged_in, twin_value, viewer_session
from tests.support.ledger_rows import make_row

BUDGETS = """
budgets:
  - {{scope: global, limit_usd: 100, window: month}}
"""


def seeded_rows() -> list[LedgerRow]:
    day = datetime(2026, 12, 10, 9, tzinfo=UTC).timestamp()
    return [
        make_row(1, ts=day, team="search", key_id="key-s", cost_total=Decimal("1.25"), tier=1),
        make_row(2, ts=day, team="search", key_id="key-s", cost_total=Decimal("0.75"), tier=1),
        make_row(3, ts=day + 60, team="ads", key_id="key-a", cost_total=Decimal("4.5"), tier=3, model="gpt-4o"),
        make_row(4, ts=day + 90, team="ads", key_id="key-a", status="error", is_final=True, cost_total=Decimal(0)),
        make_row(5, ts=datetime(2026, 11, 30, tzinfo=UTC).timestamp(), team="old", cost_total=Decimal(9)),  # last month
    ]


@asynccontextmanager
async def dashboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    async with dashboard_app(tmp_path, monkeypatch, BUDGETS, seeded_rows()) as opened:
        yield opened.client


def chart_spec(page: str, chart_id: str) -> dict[str, Any]:
    found = re.search(f'<script type="application/json" id="{chart_id}-spec">([^<]*)</script>', page)
    assert found is not None, chart_id
    spec: dict[str, Any] = json.loads(found.group(1))
    return spec


def test_the_chart_scripts_are_served_locally_and_nothing_else_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run() -> None:
        async with dashboard(tmp_path, monkeypatch) as client:
            for name in asset_names():  # no session needed: public library code, no figures
                answer = await client.get(f"/dashboard/static/{name}")
                assert answer.status_code == 200 and answer.content == asset_bytes(name)
                assert answer.headers["content-type"].startswith("text/javascript")
            for name in ("VERSIONS.json", "..%2Fassets.py", "LICENSE-chart.js.md", "nope.js"):
                missing = await client.get(f"/dashboard/static/{name}")
                assert missing.status_code == 404 and "Traceback" not in missing.text, name

    asyncio.run(run())


def figures_of(page: str) -> dict[str, str]:
    return dict(re.findall(r'data-figure="([^"]+)">([^<]*)<', page))


def test_the_page_shows_exactly_the_json_twins_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with dashboard(tmp_path, monkeypatch) as client:
            session = await logged_in(client)
            page = await client.get("/dashboard", headers={"cookie": f"margin_session={session}"})
            assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
            twin = (await client.get("/admin/api/overview", headers={"authorization": f"Bearer {ADMIN}"})).json()
            shown = figures_of(page.text)
            assert len(shown) >= 20
            for path, text in shown.items():
                assert text.lstrip("$") == twin_value(twin, path, gaps=True), path
            assert twin["spend"]["spent_usd"] == "6.500000"  # this month only: November's row is left out
            assert twin["spend"]["budget_usd"] == "100.000000" and twin["spend"]["budget_used"] == "0.0650"
            assert twin["requests"] == {"total": 4, "successful": 3}
            assert twin["cost_per_successful_request_usd"] == "2.166667"
            assert [t["group"] for t in twin["top"]["team"]] == ["ads", "search"]
            assert twin["cheapest_cost_rank_share"] == {"cost_rank": 1, "share": "0.7500"}  # 3 of 4 at rank 1
            assert "http" not in page.text.replace('href="/', "")  # nothing external
            assert re.findall(r'<script src="([^"]+)"', page.text) == [f"/dashboard/static/{n}" for n in asset_names()]
            for by, lines in twin["top"].items():  # each top list's chart plots exactly the twin's figures
                spec = chart_spec(page.text, f"chart-top-{by}")
                assert spec["categories"] == [line["group"] for line in lines]
                assert spec["series"][0]["values"] == [float(line["spend_usd"]) for line in lines]
            assert ADMIN not in page.text and ADMIN not in str(twin)
            same_by_session = await client.get("/admin/api/overview", headers={"cookie": f"margin_session={session}"})
            assert same_by_session.json() == twin

    asyncio.run(run())


def test_nothing_opens_without_the_admin_key_or_a_live_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with dashboard(tmp_path, monkeypatch) as client:
            assert (await client.get("/dashboard")).status_code == 303
            assert (await client.get("/admin/api/overview")).status_code == 401
            wrong = await client.get("/admin/api/overview", headers={"authorization": "Bearer sk-not-the-admin-key"})
            assert wrong.status_code == 403 and "sk-not-the-admin-key" not in wrong.text
            forged = f"{int(NOW) + 3600}.nonce.{'0' * 64}"
            assert (
                await client.get("/admin/api/overview", headers={"cookie": f"margin_session={forged}"})
            ).status_code == 401
            assert (await client.get("/dashboard", headers={"cookie": f"margin_session={forged}"})).status_code == 303
            form = await client.get("/dashboard/login")
            csrf = form.cookies["margin_login_csrf"]
            no_csrf = await client.post("/dashboard/login", data={"csrf": "guess", "admin_key": ADMIN})
            assert no_csrf.status_code == 403
            bad_key = await client.post("/dashboard/login", data={"csrf": csrf, "admin_key": "sk-wrong-key-123"})
            assert bad_key.status_code == 401 and "sk-wrong-key-123" not in bad_key.text
            session = await logged_in(client)
            cookies = {"cookie": f"margin_session={session}"}
            assert (await client.post("/dashboard/logout", data={"csrf": "x"}, headers=cookies)).status_code == 403
            page = (await client.get("/dashboard", headers=cookies)).text
            token = re.search(r'name="csrf" value="([^"]+)"', page)
            assert token is not None
            out = await client.post("/dashboard/logout", data={"csrf": token.group(1)}, headers=cookies)
            assert out.status_code == 303 and "margin_session=;" in out.headers["set-cookie"]
            assert (await client.post("/dashboard/login", content=b"{}")).status_code == 400  # not a form

    asyncio.run(run())


async def created_key(client: httpx.AsyncClient, team: str, tags: list[str]) -> tuple[str, str]:
    body = {"name": f"{team}-{len(tags)}", "team": team, "tags": tags}
    created = await client.post("/admin/keys", json=body, headers={"authorization": f"Bearer {ADMIN}"})
    assert created.status_code == 201, created.text
    return created.json()["key"], created.json()["key_id"]


def test_a_team_viewer_sees_no_figure_of_another_team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with dashboard(tmp_path, monkeypatch) as client:
            viewer, _ = await created_key(client, "search", ["dashboard:viewer"])
            client_key, search_key = await created_key(client, "search", [])
            _, ads_key = await created_key(client, "ads", [])
            day = datetime(2026, 12, 11, tzinfo=UTC).timestamp()
            store = client._transport.app.state.gateway.ledger  # type: ignore[attr-defined]
            await store.write([
                make_row(10, ts=day, team="search", key_id=search_key, cost_total=Decimal("0.25")),
                make_row(11, ts=day, team="ads", key_id=ads_key, cost_total=Decimal("7.75"), model="ads-only-model"),
            ])  # fmt: skip
            answer = await viewer_session(client, viewer)
            assert answer.status_code == 303
            session = answer.cookies["margin_session"]
            page = (await client.get("/dashboard", headers={"cookie": f"margin_session={session}"})).text
            by_bearer = await client.get("/admin/api/overview", headers={"authorization": f"Bearer {viewer}"})
            by_session = await client.get("/admin/api/overview", headers={"cookie": f"margin_session={session}"})
            twin = by_bearer.json()
            assert by_session.json() == twin and twin["scope"] == {"team": "search"}
            assert twin["spend"]["spent_usd"] == "2.250000" and twin["requests"]["total"] == 3  # search: 1.25+0.75+0.25
            assert [line["group"] for line in twin["top"]["team"]] == ["search"]
            assert [line["group"] for line in twin["top"]["key"]] == [search_key]
            assert "model" not in twin["top"] and twin["cheapest_cost_rank_share"] is None
            for text in (page, by_bearer.text):
                for other in ("ads", ads_key, "key-a", "4.500000", "7.750000", "ads-only-model", "gpt-4o"):
                    assert other not in text, other
            for path, shown in figures_of(page).items():
                assert shown.lstrip("$") == twin_value(twin, path, gaps=True), path
            assert viewer not in page and viewer not in by_bearer.text
            refused = await viewer_session(client, client_key)  # a client key without the viewer tag
            assert refused.status_code == 401 and client_key not in refused.text
            forbidden = await client.get("/admin/api/overview", headers={"authorization": f"Bearer {client_key}"})
            assert forbidden.status_code == 403
            admin = await client.get("/admin/api/overview", headers={"authorization": f"Bearer {ADMIN}"})
            assert {line["group"] for line in admin.json()["top"]["team"]} >= {"ads", "search"}

    asyncio.run(run())


def test_expired_sessions_and_unknown_pages_are_clear_4xx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with dashboard(tmp_path, monkeypatch) as client:
            expired = SessionSigner(ADMIN, clock=lambda: NOW - SESSION_TTL_S - 1).new_cookie()  # validly signed
            live = SessionSigner(ADMIN, clock=lambda: NOW).new_cookie()
            assert (await client.get("/admin/api/overview", headers={"cookie": f"margin_session={live}"})).is_success
            stale = await client.get("/admin/api/overview", headers={"cookie": f"margin_session={expired}"})
            assert stale.status_code == 401 and "expired" in stale.json()["error"]["message"]
            assert (await client.get("/dashboard", headers={"cookie": f"margin_session={expired}"})).status_code == 303
            other_key = SessionSigner("sk-another-admin-key-000000", clock=lambda: NOW).new_cookie()
            signed_elsewhere = await client.get(
                "/admin/api/overview", headers={"cookie": f"margin_session={other_key}"}
            )
            assert signed_elsewhere.status_code == 401
            for path in ("/dashboard/nope", "/admin/api/nope"):
                missing = await client.get(path, headers={"cookie": f"margin_session={live}"})
                assert missing.status_code == 404 and "Traceback" not in missing.text, path

    asyncio.run(run())
