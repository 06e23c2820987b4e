"""The dashboard's planner page (issue 21, section 1 item 6): the crossover computed from the ledger's
measured traffic (rollups only: the ledger's row scan fails here) with `dashboard.planner`'s profile;
the page shows exactly its JSON twin's figures, the figures are the planner's own on the same hourly
traffic, the result is kept for cache_ttl_s, a viewer is refused, and without a profile the page says
how to enable it."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from margin.config.dashboard import PlannerPageConfig
from margin.dashboard.explorer import Scope
from margin.dashboard.planner_page import PlannerPage
from margin.errors import ConfigError
from margin.ledger.hourly_usage import HourlyUsage
from margin.metering.catalog import load_catalog as load_prices
from margin.planner import Profile, profile_from_ledger, summarize_ledger
from margin.planner.catalog import load_catalog
from margin.planner.plan import plan
from margin.storage import open_ledger_store
from tests.support.dashboard import (
    ADMIN,
    FIGURE,
    NOW,
    RollupsOnly,
    dashboard_app,
    logged_in,
    twin_value,
    viewer_session,
)
from tests.support.ledger_rows import make_row

START = datetime(2026, 12, 10, tzinfo=UTC)
PROFILE: dict[str, Any] = {
    "requests_per_day": 1000,  # replaced by the ledger's
    "input_tokens": {"mean": 500, "p95": 1000},
    "output_tokens": {"mean": 250, "p95": 500},
    "sla": {"ttft_ms": 1000, "p95_ms": 30000},
    "ops_capacity": "dedicated",
    "candidates": {
        "compare_to": "openai/gpt-4.1",
        "apis": ["openai/gpt-4.1", "together/qwen2.5-7b-instruct-turbo"],
        "models": ["llama-3.1-8b"],
        "gpus": ["a10g"],
        "providers": ["aws"],
        "precisions": ["fp16"],
        "pricing": ["on_demand"],
        "managed": [],
    },
}
PLANNER = "dashboard: {{planner: {{profile: {profile}, since: 7d}}}}\n"
HOURS = ((0, 1, 40), (9, 1, 120), (9, 2, 60), (15, 2, 80))  # (hour, cost rank, requests) on each of two days


def traffic() -> tuple[list[Any], list[HourlyUsage]]:
    """Ledger rows (each request 500 tokens in, 250 out, $0.004) and the same traffic as hourly usage."""
    rows, usage, n = [], [], 0
    for day in range(2):
        for hour, rank, count in HOURS:
            at = START + timedelta(days=day, hours=hour)
            for i in range(count):
                n += 1
                rows.append(make_row(n, ts=at.timestamp() + i, tier=rank, input_uncached=500, output=250,
                                     cost_total=Decimal("0.004")))  # fmt: skip
            usage.append(HourlyUsage(at, str(rank), count, 500 * count, 250 * count, 0, Decimal("0.004") * count))
    return rows, usage


@asynccontextmanager
async def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile: Path | None = None) -> AsyncIterator[Any]:
    """The app over `traffic()`'s rows; with `profile`, `dashboard.planner` reads it."""
    extra = "" if profile is None else PLANNER
    async with dashboard_app(tmp_path, monkeypatch, extra, traffic()[0], profile=profile) as opened:
        yield opened.client


def with_profile(tmp_path: Path) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(PROFILE), encoding="utf-8")
    return path


def test_the_planner_page_shows_the_planners_figures_on_the_measured_traffic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run() -> None:
        async with gateway(tmp_path, monkeypatch, with_profile(tmp_path)) as client:
            session = {"cookie": f"margin_session={await logged_in(client)}"}
            page = await client.get("/dashboard/planner", headers=session)
            twin = await client.get("/admin/api/planner", headers={"authorization": f"Bearer {ADMIN}"})
            assert page.status_code == 200 and twin.status_code == 200, (page.text[:300], twin.text)
            body = twin.json()
            shown = FIGURE.findall(page.text)
            cells = sum(len(row) for spec in body["tables"].values() for row in spec["rows"])
            assert len(shown) == len(body["summary"]) + cells + 2  # + the window
            for path, text in shown:
                assert html.unescape(text) == twin_value(body, path), path
            assert "data-chart-spec=" in page.text and "chart-planner-0" in page.text
            # The planner's own answer on the same hourly traffic, computed here from the rows written.
            usage = traffic()[1]
            expected = plan(profile_from_ledger(usage, Profile.model_validate(PROFILE)),
                            load_catalog(prices=load_prices()), summarize_ledger(usage))  # fmt: skip
            total = sum(count for _, _, count in HOURS) * 2
            assert body["summary"]["requests"] == total
            assert body["summary"]["spend_usd"] == f"{Decimal('0.004') * total:.6f}"
            days = ((usage[-1].hour - usage[0].hour).total_seconds() / 3600 + 1) / 24
            assert body["summary"]["requests_per_day"] == f"{total / days:.1f}"
            cp = expected.classes[0]
            crossover = body["tables"]["crossover"]
            headline = dict(zip(crossover["columns"], crossover["rows"][0], strict=True))
            crossings = [c.requests_per_day for c in cp.crossovers if c.requests_per_day is not None]
            assert crossings, "the profile's hosted option must cross the API somewhere"
            first = min(crossings)
            assert headline["pays_from_requests_per_day"] == str(Decimal(repr(first)).quantize(Decimal("0.1")))
            assert headline["self_hosted"] is not None and headline["api_monthly_usd"] is not None
            assert any(headline["self_hosted"] in note and "pays from" in note for note in body["notes"])

    asyncio.run(run())


def test_without_a_profile_the_page_says_how_to_enable_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with gateway(tmp_path, monkeypatch) as client:
            session = {"cookie": f"margin_session={await logged_in(client)}"}
            page = await client.get("/dashboard/planner", headers=session)
            twin = await client.get("/admin/api/planner", headers={"authorization": f"Bearer {ADMIN}"})
            assert page.status_code == 200 and twin.status_code == 200
            assert "dashboard.planner.profile" in page.text and "dashboard.planner.profile" in twin.json()["notes"][0]
            assert twin.json()["tables"] == {} and "data-chart-spec" not in page.text
            bad = await client.get("/admin/api/planner?since=7d", headers={"authorization": f"Bearer {ADMIN}"})
            assert bad.status_code == 400 and "unknown parameter" in bad.text

    asyncio.run(run())


def test_a_viewer_is_refused_the_planner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        async with gateway(tmp_path, monkeypatch, with_profile(tmp_path)) as client:
            body = {"name": "v", "team": "search", "tags": ["dashboard:viewer"]}
            created = await client.post("/admin/keys", json=body, headers={"authorization": f"Bearer {ADMIN}"})
            secret = created.json()["key"]
            twin = await client.get("/admin/api/planner", headers={"authorization": f"Bearer {secret}"})
            assert twin.status_code == 403 and "admin" in twin.text
            login = await viewer_session(client, secret)
            cookie = login.cookies["margin_session"]
            page = await client.get("/dashboard/planner", headers={"cookie": f"margin_session={cookie}"})
            assert page.status_code == 403

    asyncio.run(run())


def test_a_plan_is_kept_for_its_ttl_then_recomputed(tmp_path: Path) -> None:
    async def run() -> None:
        store = open_ledger_store("sqlite:///{data_dir}/ledger.db", tmp_path)
        await store.migrate()
        rows = traffic()[0]
        await store.write(rows[:100])
        clock = [0.0]
        page = PlannerPage(Profile.model_validate(PROFILE), load_catalog(prices=load_prices()), "7d", 30.0,
                           monotonic=lambda: clock[0])  # fmt: skip
        now = datetime.fromtimestamp(NOW, UTC)
        first = await page.result(RollupsOnly(store), {}, now, Scope(None))  # type: ignore[arg-type]
        await store.write(rows[100:])
        clock[0] = 29.0
        assert (await page.result(RollupsOnly(store), {}, now, Scope(None))) is first  # type: ignore[arg-type]
        clock[0] = 31.0
        later = await page.result(RollupsOnly(store), {}, now, Scope(None))  # type: ignore[arg-type]
        assert first.figures["summary"]["requests"] == 100 and later.figures["summary"]["requests"] == len(rows)
        await store.close()

    asyncio.run(run())


def test_an_unreadable_profile_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"dashboard\.planner\.profile"):
        PlannerPage.from_config(PlannerPageConfig(profile=str(tmp_path / "missing.yaml")), load_prices())
    with pytest.raises(ConfigError, match=r"dashboard\.planner\.profile"):
        PlannerPage.from_config(PlannerPageConfig(profile={"requests_per_day": "many"}), load_prices())
