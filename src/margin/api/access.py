"""Who may read the operational endpoints: /metrics, and the details of /readyz.

/metrics labels spend by team and model group, so it is an operator's view like the admin API:
with `server.metrics_token` set it needs that token (or the admin key) as a bearer token, which
is what Prometheus' `authorization` scrape setting sends; without one it opens exactly as the admin
API does (the admin key, or a loopback caller when no admin key is configured). With
`server.metrics_port` set it is served only on that separate listener (docs/security.md).
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from margin.api.admin import require_admin
from margin.api.errors import render
from margin.api.state import state_of
from margin.errors import AuthError, NotFound, PermissionDenied

# What the metrics listener answers; everything else there is 404 (it is not an API port).
METRICS_LISTENER_PATHS = frozenset({"/metrics", "/autoscale", "/healthz"})


def bearer_of(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else ""


def _matches(given: str, expected: str | None) -> bool:
    return bool(given) and expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def on_metrics_listener(request: Request) -> bool:
    port = state_of(request).metrics_port
    server = request.scope.get("server")
    return port is not None and server is not None and server[1] == port


def require_metrics_reader(request: Request) -> None:
    """Raises unless the caller may read /metrics on the listener it came in on."""
    state = state_of(request)
    if state.metrics_port is not None and not on_metrics_listener(request):
        raise NotFound(f"There is no endpoint at {request.url.path}.")  # it lives on the metrics port
    token = state.metrics_token
    if token is None:
        if on_metrics_listener(request):
            return  # the listener's bind address is its protection (server.metrics_host)
        require_admin(request)
        return
    given = bearer_of(request)
    if _matches(given, token) or _matches(given, state.admin_key):
        return
    if not given:
        raise AuthError("/metrics needs the metrics token (Authorization: Bearer ...).", code="metrics_token_required")
    raise PermissionDenied("The token given does not open /metrics.")


def is_admin(request: Request) -> bool:
    """Whether the caller would be let into the admin API (its key, or its locality)."""
    try:
        require_admin(request)
    except (AuthError, PermissionDenied):
        return False
    return True


class MetricsListenerGuard:
    """With `server.metrics_port`, the same app also serves the metrics listener's socket: there it
    answers only METRICS_LISTENER_PATHS, so that port never becomes a second way into the API."""

    def __init__(self, app: ASGIApp, *, metrics_port: int | None) -> None:
        self.app = app
        self.metrics_port = metrics_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if (
            self.metrics_port is not None
            and scope["type"] == "http"
            and server is not None
            and server[1] == self.metrics_port
            and scope["path"] not in METRICS_LISTENER_PATHS
        ):
            request = Request(scope, receive)
            response: Response = render(request, NotFound(f"There is no endpoint at {scope['path']}."))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
