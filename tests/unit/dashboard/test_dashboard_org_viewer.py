"""Org-scoped viewer keys (issue 21, section 2): a key tagged `dashboard:org-viewer` sees its org's
figures only. Over a real SQLite ledger whose row scan fails (rollups only), with teams search and
mail in org acme and team ads in org globex: an acme viewer finds no globex figure (name, key, user,
model, amount) on any page, twin or CSV, by session or bearer; its figures are acme's own and every
figure of its pages equals its twin's; what mixes orgs is 403."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.support.dashboard import ADMIN, FIGURE, PAGES, dashboard_app, twin_path, twin_value, viewer_session
from tests.support.ledger_rows import make_row

BUDGETS = """
budgets:
  - {{scope: global, limit_usd: 100, window: month}}
  - {{scope: "org:acme", limit_usd: 60, window: month}}
  - {{scope: "org:globex", limit_usd: 71.35, window: month}}
  - {{scope: "team:*", limit_usd: 40, window: month}}
"""
Keys = dict[str, str]
# (the budget is a figure no token or timestamp on a page can contain by chance)
GLOBEX = ("globex", "ads", "7.75", "ads-only-model", "ads-person", "71.35")  # org, team, spend, model, user, budget


@asynccontextmanager
async def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[httpx.AsyncClient, Keys]]:
    async with dashboard_app(tmp_path, monkeypatch, BUDGETS) as opened:
        c, store = opened.client, opened.store
        keys: dict[str, str] = {}
        for name, org, team, tags in (("viewer", "acme", "search", ["dashboard:org-viewer"]),
                                      ("search", "acme", "search", []), ("mail", "acme", "mail", []),
                                      ("ads", "globex", "ads", [])):  # fmt: skip
            body = {"name": f"{name}-key", "org": org, "team": team, "tags": tags, "user": f"{team}-person"}
            created = await c.post("/admin/keys", json=body, headers={"authorization": f"Bearer {ADMIN}"})
            assert created.status_code == 201, created.text
            keys[name], keys[f"{name}_id"] = created.json()["key"], created.json()["key_id"]
        day = datetime(2026, 12, 10, 9, tzinfo=UTC).timestamp()
        await store.write([
            make_row(1, ts=day, org="acme", team="search", key_id=keys["search_id"], user="search-person",
                     cost_total=Decimal("1.25"), extra={"cache": "miss"}),
            make_row(2, ts=day + 3600, org="acme", team="search", key_id=keys["search_id"], user="search-person",
                     cost_total=Decimal("0.5"), cache_result="exact", saved_cost=Decimal("0.25")),
            make_row(3, ts=day + 7200, org="acme", team="mail", key_id=keys["mail_id"], user="mail-person",
                     cost_total=Decimal("2.125")),
            make_row(4, ts=day + 86400, org="globex", team="ads", key_id=keys["ads_id"], user="ads-person",
                     tags=("ads-tag",), cost_total=Decimal("7.75"), model="ads-only-model", tier=3, deployment="big",
                     extra={"cache": "bypass; media"}),
            make_row(5, ts=day + 86400, org="globex", team="ads", key_id=keys["ads_id"], user="ads-person",
                     tags=("ads-tag",), cost_total=Decimal(0), model="ads-only-model", tier=3, deployment="big",
                     cache_result="semantic", saved_cost=Decimal("0.5")),
        ])  # fmt: skip
        yield c, keys


def test_an_org_viewer_sees_no_figure_of_another_org(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with gateway(tmp_path, monkeypatch) as (client, keys):
            answer = await viewer_session(client, keys["viewer"])
            assert answer.status_code == 303, answer.text
            session = {"cookie": f"margin_session={answer.cookies['margin_session']}"}
            bearer = {"authorization": f"Bearer {keys['viewer']}"}
            secrets = (*GLOBEX, keys["ads_id"])
            seen = 0
            pages = ("", *PAGES, "planner", "spend?by=org", "spend?by=team&team=mail")
            for page in (*pages, "spend.csv?by=key", "spend.csv?by=user&table=series", "spend.csv?by=org"):
                twin = "/admin/api/overview" if page == "" else twin_path(page)
                for url, headers in ((f"/dashboard/{page}".rstrip("/"), session), (twin, bearer), (twin, session)):
                    if "csv" in page and url.startswith("/admin"):
                        continue
                    got = await client.get(url, headers=headers)
                    assert got.status_code in (200, 403), (url, got.status_code, got.text)
                    seen += got.status_code == 200
                    for secret in secrets:
                        assert secret not in got.text, (url, secret)
            assert seen >= 30
            overview = (await client.get("/admin/api/overview", headers=bearer)).json()
            assert overview["scope"] == {"team": None, "org": "acme"}
            assert overview["spend"]["spent_usd"] == "3.875000" and overview["spend"]["budget_usd"] == "60.000000"
            assert sorted(line["group"] for line in overview["top"]["team"]) == ["mail", "search"]
            own = (await client.get("/admin/api/spend?by=key", headers=bearer)).json()
            assert sorted(row[0] for row in own["tables"]["groups"]["rows"]) == sorted(
                [keys["search_id"], keys["mail_id"]]
            )
            assert own["summary"]["spend_usd"] == "3.875000" and own["scope"] == {"team": None, "org": "acme"}
            by_org = (await client.get("/admin/api/spend?by=org", headers=bearer)).json()
            assert [row[0] for row in by_org["tables"]["groups"]["rows"]] == ["acme"]
            cache = (await client.get("/admin/api/cache", headers=bearer)).json()
            # globex's semantic hit and media bypass are not acme's
            assert cache["summary"] == {"requests": 3, "cache_hits": 1, "hit_rate": "0.3333", "saved_usd": "0.250000",
                                        "hits_exact": 1, "hits_semantic": 0, "hits_coalesced": 0, "cache_misses": 1,
                                        "bypassed": 0}  # fmt: skip
            outcomes = {row[0]: row[1] for row in cache["tables"]["outcomes"]["rows"]}
            assert outcomes["bypass_media"] == 0 and outcomes["hits_semantic"] == 0 and outcomes["cache_misses"] == 1
            assert cache["tables"]["series"]["rows"] == [["2026-12-10T00:00:00+00:00", 1, 0, 0, 1, 0]]
            budgets = (await client.get("/admin/api/budgets", headers=bearer)).json()
            assert sorted(row[0] for row in budgets["tables"]["budgets"]["rows"]) == [
                "org:acme",
                "team:mail",
                "team:search",
            ]
            for refused in ("/admin/api/spend?by=model", "/admin/api/spend?team=ads", "/admin/api/spend?org=globex",
                            "/admin/api/performance", "/admin/api/planner", "/admin/api/spend?by=tag"):  # fmt: skip
                got = await client.get(refused, headers=bearer)
                assert got.status_code == 403, refused

    asyncio.run(run())


def test_an_org_viewers_pages_show_exactly_its_twins_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with gateway(tmp_path, monkeypatch) as (client, keys):
            answer = await viewer_session(client, keys["viewer"])
            session = {"cookie": f"margin_session={answer.cookies['margin_session']}"}
            bearer = {"authorization": f"Bearer {keys['viewer']}"}
            hourly = "spend?by=user&period=hour&since=2026-12-10&until=2026-12-11"
            for page in ("spend", "spend?by=key", "spend?by=org", hourly, "budgets", "cache", "rollouts"):
                shown = await client.get(f"/dashboard/{page}", headers=session)
                twin = await client.get(twin_path(page), headers=bearer)
                assert shown.status_code == 200 and twin.status_code == 200, (page, twin.text)
                figures = FIGURE.findall(shown.text)
                assert ("scope.org", "acme") in figures, page
                for path, text in figures:
                    assert html.unescape(text) == twin_value(twin.json(), path), (page, path)

    asyncio.run(run())


def test_an_org_viewer_key_needs_the_tag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with gateway(tmp_path, monkeypatch) as (client, keys):
            for name in ("search", "ads"):  # client keys of either org open nothing
                got = await client.get("/admin/api/overview", headers={"authorization": f"Bearer {keys[name]}"})
                assert got.status_code == 403
                assert (await viewer_session(client, keys[name])).status_code == 401

    asyncio.run(run())
