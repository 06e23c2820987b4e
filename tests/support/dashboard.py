"""The dashboard tests' shared pieces: the app in process over a real SQLite ledger whose row scan
fails (the dashboard must serve from rollups only), logging in by form, and reading a page's figures
against its JSON twin."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from margin.app import create_app
from margin.config import parse_config
from margin.storage import open_ledger_store
from margin.storage.ledger_row import LedgerRow
from margin.storage.memory import MemoryKeyStore
from margin.storage.protocols import LedgerStore

ADMIN = "sk-admin-dashboard-tests-0123456789"
NOW = datetime(2026, 12, 15, 12, tzinfo=UTC).timestamp()
# The start of every test's config (`{data}`: the data dir); a test's `extra` adds models, budgets, cache.
BASE_CONFIG = """
data_dir: {data}
server: {{admin_key: env:DASHBOARD_ADMIN_KEY}}
deployments:
  - {{name: small, provider: fake, model: small, price: {{input: "1", output: "2"}}}}
models:
  - {{name: chat, deployments: [small]}}
"""
FIGURE = re.compile(r'data-figure="([^"]+)">([^<]*)<')  # (dotted path into the twin, text) of each figure
# Every page but the Overview and the planner, with the queries the page and twin tests read.
PAGES = (
    "spend", "spend?by=key&period=hour&since=2026-12-10&until=2026-12-12", "spend?by=user", "spend?by=org",
    "spend?by=model&since=30d", "spend?by=tag", "spend?by=cost_rank", "spend?by=team&team=search",
    "performance", "performance?since=7d&period=day", "budgets", "cache", "cache?since=30d", "rollouts",
)  # fmt: skip


class RollupsOnly:
    """The real store, except that scanning ledger rows fails: the dashboard must not need it."""

    def __init__(self, store: LedgerStore) -> None:
        self._store = store

    def query_rows(self, *args: Any, **kwargs: Any) -> Iterator[LedgerRow]:
        raise AssertionError("the dashboard scanned ledger rows")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


@dataclass(frozen=True, slots=True)
class Dashboard:
    client: httpx.AsyncClient
    store: LedgerStore  # the real store behind RollupsOnly: tests write rows to it
    app: Starlette


@asynccontextmanager
async def dashboard_app(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    extra: str = "",
    rows: Sequence[LedgerRow] = (),
    **fields: object,
) -> AsyncIterator[Dashboard]:
    """The app (admin key ADMIN, clock NOW) for BASE_CONFIG + `extra` (formatted with `data`, the
    data dir `tmp_path`, and `fields`) over a migrated SQLite ledger in `tmp_path` holding `rows`,
    started, with an in-process client on https://gw."""
    monkeypatch.setenv("DASHBOARD_ADMIN_KEY", ADMIN)
    store = open_ledger_store("sqlite:///{data_dir}/ledger.db", tmp_path)
    await store.migrate()
    if rows:
        await store.write(list(rows))
    config = parse_config((BASE_CONFIG + extra).format(data=tmp_path, **fields))
    app = create_app(config, ledger=RollupsOnly(store), clock=lambda: NOW, key_store=MemoryKeyStore())  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="https://gw") as c:
        yield Dashboard(c, store, app)


async def logged_in(client: httpx.AsyncClient) -> str:
    """The session cookie's value after logging in with the admin key through the form."""
    form = await client.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None and form.cookies.get("margin_login_csrf") == csrf.group(1)
    answer = await client.post("/dashboard/login", data={"csrf": csrf.group(1), "admin_key": ADMIN})
    assert answer.status_code == 303 and answer.headers["location"] == "/dashboard"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("margin_session="))
    for flag in ("HttpOnly", "Secure", "SameSite=Strict", "Max-Age=28800"):
        assert flag in cookie, cookie
    return cookie.split(";")[0].split("=", 1)[1]


async def viewer_session(client: httpx.AsyncClient, secret: str) -> httpx.Response:
    """The login form's answer for a viewer key's secret (303 with the session cookie, or a refusal)."""
    form = await client.get("/dashboard/login")
    csrf = form.cookies["margin_login_csrf"]
    return await client.post("/dashboard/login", data={"csrf": csrf, "admin_key": secret})


def twin_value(twin: dict[str, Any], path: str, *, gaps: bool = False) -> str:
    """The twin's value at a figure's dotted path, as the page writes it ("n/a" for null). With
    `gaps`, a path through a null (a figure with nothing behind it yet, e.g. no traffic at any cost
    rank) reads "n/a" too; without, it fails."""
    value: Any = twin
    for part in path.split("."):
        if gaps and value is None:
            break
        value = value[int(part)] if isinstance(value, list) else value[part]
    return "n/a" if value is None else str(value)


def twin_path(page: str) -> str:
    """The JSON twin's URL of a dashboard page (`spend?by=key` -> `/admin/api/spend?by=key`)."""
    name, _, query = page.partition("?")
    return f"/admin/api/{name}" + (f"?{query}" if query else "")
