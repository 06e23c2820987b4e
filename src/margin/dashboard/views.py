"""The dashboard's pages after the Overview, each an HTML page under /dashboard/... and its JSON twin
under /admin/api/... rendering one figures dict (`margin.dashboard.tables`): spend explorer (with
CSV export), performance, budgets and keys, cache. Pages need a session (else a redirect to the
login form); twins open with the admin or a viewer key as a bearer token or the session cookie."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from margin.dashboard.activity import build_activity
from margin.dashboard.budget_page import build_budgets
from margin.dashboard.cache_page import build_cache
from margin.dashboard.explorer import BY_CHOICES, Scope, build_spend
from margin.dashboard.live import LiveSource, NoLive
from margin.dashboard.page_charts import page_charts
from margin.dashboard.page_html import figures_page, spend_controls
from margin.dashboard.performance import build_performance
from margin.dashboard.planner_page import PlannerPage
from margin.dashboard.routes import PAGE_HEADERS, Dashboard
from margin.dashboard.session import SESSION_COOKIE, Viewer
from margin.errors import InvalidRequest
from margin.storage.batches import BatchStore
from margin.storage.rollouts import RolloutStore

Builder = Callable[[Scope, dict[str, str]], Awaitable[dict[str, Any]]]
TITLES = {
    "spend": "Spend explorer", "performance": "Performance", "budgets": "Budgets and keys", "cache": "Cache",
    "rollouts": "Rollouts, evals and batches", "planner": "Planner",
}  # fmt: skip
JSON_HEADERS = {"cache-control": "no-store"}


class PageViews:
    def __init__(
        self,
        dashboard: Dashboard,
        live: LiveSource | None = None,
        *,
        rollouts: RolloutStore | None = None,
        batches: BatchStore | None = None,
        planner: PlannerPage | None = None,
    ) -> None:
        self.dashboard = dashboard
        self.live: LiveSource = live or NoLive()
        self.rollouts, self.batches = rollouts, batches
        self.planner = planner or PlannerPage(None, None)

    def routes(self) -> list[Route]:
        routes = [Route("/dashboard/spend.csv", self.spend_csv, methods=["GET"])]
        for name in TITLES:
            routes.append(Route(f"/dashboard/{name}", self._page(name), methods=["GET"]))
            routes.append(Route(f"/admin/api/{name}", self._twin(name), methods=["GET"]))
        return routes

    async def figures(self, name: str, scope: Scope, query: dict[str, str]) -> dict[str, Any]:
        figures = await self._figures(name, scope, query)
        figures["scope"] = scope.json()  # a team's or an org's viewer, or the admin (team None)
        return figures

    async def _figures(self, name: str, scope: Scope, query: dict[str, str]) -> dict[str, Any]:
        now = datetime.fromtimestamp(self.dashboard.clock(), UTC)
        ledger = self.dashboard.ledger
        if name == "spend":
            return await build_spend(ledger, query, now, scope)
        if name == "performance":
            return await build_performance(ledger, self.live, query, now, scope)
        if name == "budgets":
            return await build_budgets(self.live, query, scope)
        if name == "rollouts":
            return await build_activity(self.rollouts, self.batches, query, scope)
        if name == "planner":
            return (await self.planner.result(ledger, query, now, scope)).figures
        return await build_cache(ledger, self.live, query, now, scope)

    async def scope(self, viewer: Viewer) -> Scope:
        store = self.dashboard.key_store
        keys = await store.list_keys() if store is not None else []
        return Scope(viewer.team, {record.key_id: record for record in keys}, viewer.org)

    def _page(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        async def page(request: Request) -> Response:
            signer = self.dashboard._signer()
            session = signer.session(request.cookies.get(SESSION_COOKIE))
            if session is None:
                return RedirectResponse("/dashboard/login", status_code=303)
            query, scope = _query(request), await self.scope(session.viewer)
            if name == "planner":  # figures and chart from one cached plan
                now = datetime.fromtimestamp(self.dashboard.clock(), UTC)
                planned = await self.planner.result(self.dashboard.ledger, query, now, scope)
                figures, charts = {**planned.figures, "scope": scope.json()}, planned.charts
            else:
                figures = await self.figures(name, scope, query)
                charts = page_charts(figures)
            controls = spend_controls(query, BY_CHOICES) if name == "spend" else ""
            csrf = signer.csrf_token(session)
            html = figures_page(TITLES[name], figures, csrf, twin=f"/admin/api/{name}", query=query,
                                controls=controls, charts=charts)  # fmt: skip
            return HTMLResponse(html, headers=PAGE_HEADERS)

        return page

    def _twin(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        async def twin(request: Request) -> Response:
            viewer = await self.dashboard._require_viewer(request)
            figures = await self.figures(name, await self.scope(viewer), _query(request))
            return Response(orjson.dumps(figures), media_type="application/json", headers=JSON_HEADERS)

        return twin

    async def spend_csv(self, request: Request) -> Response:
        """One of the explorer's tables (`table=groups`, the default, or `series`) as CSV: the same
        figures as the page and its twin."""
        query = _query(request)
        which = query.pop("table", "groups")
        if which not in ("groups", "series"):
            raise InvalidRequest("table: choose groups or series")
        viewer = await self.dashboard._require_viewer(request)
        figures = await self.figures("spend", await self.scope(viewer), query)
        spec = figures["tables"][which]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(spec["columns"])
        writer.writerows(["" if value is None else value for value in row] for row in spec["rows"])
        headers = {**JSON_HEADERS, "content-disposition": f'attachment; filename="margin-spend-{which}.csv"'}
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)


def _query(request: Request) -> dict[str, str]:
    params = request.query_params
    repeated = [name for name in params if len(params.getlist(name)) > 1]
    if repeated:
        raise InvalidRequest(f"{repeated[0]} is given more than once")
    return dict(params)
