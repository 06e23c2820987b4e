"""The dashboard's routes: `/dashboard` (the Overview page), its login and logout forms, and the
JSON twin `/admin/api/overview`. The twin opens with the admin key (or a viewer key) as a bearer
token (scripts) or the session cookie (the pages' own link). A viewer key is a virtual key tagged
`dashboard:viewer`: it sees its own team's figures only. Without `server.admin_key` the dashboard is off: a 403
says why. Errors are margin's own (margin/errors.py), rendered by the app's one handler."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from margin.charts import asset_bytes, asset_names
from margin.config.limits import BudgetConfig
from margin.dashboard.charts import STATIC_PREFIX
from margin.dashboard.overview import build_overview, org_teams
from margin.dashboard.pages import CONTENT_SECURITY_POLICY, login_page, overview_page
from margin.dashboard.session import (
    ADMIN,
    LOGIN_CSRF_COOKIE,
    ORG_VIEWER_TAG,
    SESSION_COOKIE,
    SESSION_TTL_S,
    VIEWER_TAG,
    Session,
    SessionSigner,
    Viewer,
    cookie_header,
)
from margin.errors import AuthError, InvalidRequest, NotFound, PermissionDenied
from margin.identity.keys import hash_secret
from margin.storage.protocols import KeyStore, LedgerStore

MAX_FORM_BYTES = 4096
PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class Dashboard:
    def __init__(
        self,
        ledger: LedgerStore,
        *,
        admin_key: str | None,
        budgets: Sequence[BudgetConfig],
        key_store: KeyStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger, self.budgets, self.clock, self.key_store = ledger, budgets, clock, key_store
        self.signer = SessionSigner(admin_key, clock) if admin_key else None

    def routes(self) -> list[Route]:
        return [
            Route("/dashboard", self.overview_page, methods=["GET"]),
            Route("/dashboard/login", self.login_form, methods=["GET"]),
            Route("/dashboard/login", self.login, methods=["POST"]),
            Route("/dashboard/logout", self.logout, methods=["POST"]),
            Route("/admin/api/overview", self.overview_json, methods=["GET"]),
            Route(f"{STATIC_PREFIX}/{{name}}", static_asset, methods=["GET"]),
        ]

    async def overview_page(self, request: Request) -> Response:
        signer = self._signer()
        session = signer.session(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return RedirectResponse("/dashboard/login", status_code=303)
        figures = await self._overview(session.viewer)
        return HTMLResponse(overview_page(figures, signer.csrf_token(session)), headers=PAGE_HEADERS)

    async def overview_json(self, request: Request) -> Response:
        viewer = await self._require_viewer(request)
        body = orjson.dumps(await self._overview(viewer))
        return Response(body, media_type="application/json", headers={"cache-control": "no-store"})

    async def login_form(self, request: Request) -> Response:
        self._signer()
        token = secrets.token_urlsafe(24)
        response = HTMLResponse(login_page(token), headers=PAGE_HEADERS)
        response.headers.append("set-cookie", cookie_header(LOGIN_CSRF_COOKIE, token, 600, "/dashboard/login"))
        return response

    async def login(self, request: Request) -> Response:
        signer = self._signer()
        form = await _form(request)
        expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not expected or not secrets.compare_digest(form.get("csrf", ""), expected):
            raise PermissionDenied("The login form expired or did not come from this dashboard: load it again.")
        given = form.get("admin_key", "")
        scope = await self._scope_of(given)
        if scope is None:
            token = secrets.token_urlsafe(24)
            page = login_page(token, "That is not the admin key.")
            refused = HTMLResponse(page, status_code=401, headers=PAGE_HEADERS)
            refused.headers.append("set-cookie", cookie_header(LOGIN_CSRF_COOKIE, token, 600, "/dashboard/login"))
            return refused
        response = RedirectResponse("/dashboard", status_code=303)
        cookie = signer.new_cookie(team=scope.team, org=scope.org)
        response.headers.append("set-cookie", cookie_header(SESSION_COOKIE, cookie, SESSION_TTL_S))
        response.headers.append("set-cookie", cookie_header(LOGIN_CSRF_COOKIE, "", 0, "/dashboard/login"))
        return response

    async def logout(self, request: Request) -> Response:
        signer = self._signer()
        session = self._session(request)
        form = await _form(request)
        if not secrets.compare_digest(form.get("csrf", ""), signer.csrf_token(session)):
            raise PermissionDenied("The logout form did not come from this session.")
        response = RedirectResponse("/dashboard/login", status_code=303)
        response.headers.append("set-cookie", cookie_header(SESSION_COOKIE, "", 0))
        return response

    async def _overview(self, viewer: Viewer) -> dict[str, object]:
        now = datetime.fromtimestamp(self.clock(), UTC)
        if not viewer.limited:
            return await build_overview(self.ledger, self.budgets, now)
        keys = await self.key_store.list_keys() if self.key_store is not None else []
        if viewer.org is not None:
            org_keys = frozenset(k.key_id for k in keys if k.org == viewer.org)
            teams = org_teams(keys, viewer.org)
            return await build_overview(self.ledger, self.budgets, now, org=viewer.org, team_keys=org_keys, teams=teams)
        team_keys = frozenset(k.key_id for k in keys if k.team == viewer.team)
        return await build_overview(self.ledger, self.budgets, now, team=viewer.team, team_keys=team_keys)

    async def _scope_of(self, given: str) -> Viewer | None:
        """ADMIN for the admin key (every team); a team's or an org's Viewer for a live viewer or
        org viewer key; None: neither (a client key without a viewer tag opens nothing here)."""
        if self._signer().is_admin_key(given):
            return ADMIN
        if not given or self.key_store is None:
            return None
        record = await self.key_store.find_key(hash_secret(given), self.clock())
        if record is None:
            return None
        if ORG_VIEWER_TAG in record.tags and record.org:
            return Viewer(org=record.org)
        if VIEWER_TAG in record.tags and record.team:
            return Viewer(team=record.team)
        return None

    def _signer(self) -> SessionSigner:
        if self.signer is None:
            raise PermissionDenied("The dashboard needs server.admin_key: its login is the admin key.")
        return self.signer

    def _session(self, request: Request) -> Session:
        session = self._signer().session(request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise AuthError("No dashboard session, or it expired: log in at /dashboard/login.")
        return session

    async def _require_viewer(self, request: Request) -> Viewer:
        """The admin key or a viewer key as a bearer token, or a live session cookie; the team or org
        its figures are limited to (ADMIN: every team)."""
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            scope = await self._scope_of(auth[7:])
            if scope is None:
                raise PermissionDenied("The key given is neither the admin key nor a dashboard viewer key.")
            return scope
        return self._session(request).viewer


async def static_asset(request: Request) -> Response:
    """The chart scripts (the vendored Chart.js, its annotation plugin, margin's renderer) and
    nothing else; public, like any page's scripts, and never a page's figures."""
    name = request.path_params["name"]
    if name not in asset_names():
        raise NotFound(f"No dashboard asset {name!r}.")
    headers = {"cache-control": "public, max-age=86400", "x-content-type-options": "nosniff"}
    return Response(asset_bytes(name), media_type="text/javascript; charset=utf-8", headers=headers)


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the dashboard's only form bodies), bounded in size."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise InvalidRequest("Expected a form (application/x-www-form-urlencoded).")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise InvalidRequest("The form is too large.")
    try:
        fields = parse_qs(body.decode(), strict_parsing=False, max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The form could not be read.") from None
    return {name: values[0] for name, values in fields.items()}
