"""Draining a deployment (docs/deploy.md, "Spot drain"): new requests go to the route's next
deployment (another replica group or the next tier), calls already open (streams included) finish.

- `POST /admin/deployments/{name}/drain` and `/undrain` (admin key), optional body
  `{"reason": "...", "endpoint": "host:port"}`: `endpoint` drains one replica of several (a spot
  node's); the deployment itself is drained once its last replica is.
- `POST /admin/termination-notice` (admin key or the metrics token, so a node termination handler
  can hold a narrower secret): `{"deployment": "...", "endpoint": "host:port", "reason":
  "spot-interruption", "not_after": 1765000000}` drains the deployment (or its replica) named,
  until `not_after` (epoch seconds, when the node goes): then the drain expires on every replica
  (at its next refresh) and is deleted with an audit row by `auto:not_after`.

Drains are stored (margin.autoscale.drains): every replica applies them within `limits.key_cache_s`
and after a restart, and each drain, undrain and notice is a row of `GET /admin/audit?kind=drain`
(actor: the admin key's prefix, never the key, or "metrics-token"). State shows in
`GET /admin/deployments` (`standby`); each change is also logged on `margin.audit`."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from margin.api.access import bearer_of, is_admin
from margin.api.admin import require_admin
from margin.api.admin_objects import actor_of
from margin.api.state import state_of
from margin.autoscale.drains import host_of
from margin.autoscale.standby import Standby
from margin.errors import AuthError, InvalidRequest, NotFound, ServiceUnavailable
from margin.providers.balance import Balancer
from margin.storage.protocols import StorageError

audit = logging.getLogger("margin.audit")
_MAX_BODY = 4096


async def drain(request: Request) -> Response:
    require_admin(request)
    standby, name = _target(request, request.path_params["name"])
    body = await _body(request, required=False)
    reason = _text(body, "reason", "admin") or "admin"
    endpoint = _text(body, "endpoint", None)
    view = await _apply(request, standby, name, endpoint, drained=True, reason=reason, by=actor_of(request))
    audit.warning("drain deployment=%s endpoint=%s reason=%s by=%s", name, endpoint, reason, actor_of(request))
    return _json(view)


async def undrain(request: Request) -> Response:
    require_admin(request)
    standby, name = _target(request, request.path_params["name"])
    endpoint = _text(await _body(request, required=False), "endpoint", None)
    view = await _apply(request, standby, name, endpoint, drained=False, reason="", by=actor_of(request))
    audit.warning("undrain deployment=%s endpoint=%s by=%s", name, endpoint, actor_of(request))
    return _json(view)


async def _apply(
    request: Request,
    standby: Standby,
    name: str,
    endpoint: str | None,
    *,
    drained: bool,
    reason: str,
    by: str,
    not_after: float | None = None,
    via: str = "admin",
) -> dict[str, Any]:
    """Drain or undrain the deployment, or one replica of it (`endpoint`: host:port as
    /admin/deployments lists it); the deployment is drained once its last replica is. With a store
    (standby.sync) the drain is shared by every replica, kept across restarts and audited."""
    balancer: Balancer | None = getattr(state_of(request).providers[name], "balancer", None)
    if endpoint is not None and (balancer is None or not any(host_of(e.base) == endpoint for e in balancer.endpoints)):
        raise NotFound(f"Deployment {name!r} has no endpoint {endpoint[:64]!r}.", param="endpoint")
    if standby.sync is not None:
        try:
            if drained:
                await standby.sync.drain(name, endpoint, reason=reason, by=by, not_after=not_after, via=via)
            else:
                await standby.sync.undrain(name, endpoint, by=by)
        except StorageError as exc:
            raise ServiceUnavailable(f"The drain was not stored (the database did not answer): {exc}") from None
        return {"name": name, **standby.describe(name), "replicas": balancer.describe() if balancer else None}
    return _apply_here(standby, balancer, name, endpoint, drained=drained, reason=reason, by=by, not_after=not_after)


def _apply_here(
    standby: Standby,
    balancer: Balancer | None,
    name: str,
    endpoint: str | None,
    *,
    drained: bool,
    reason: str,
    by: str,
    not_after: float | None,
) -> dict[str, Any]:
    """This replica only (a gateway without an object store)."""
    if endpoint is not None and balancer is not None:
        balancer.set_drained(endpoint, drained)
        if drained and not balancer.all_drained:
            return {"name": name, **standby.describe(name), "replicas": balancer.describe()}
    if drained:
        view = standby.drain(name, reason=reason, by=by, not_after=not_after)
    else:
        if endpoint is None and balancer is not None:
            for replica in balancer.endpoints:
                replica.drained = False
        view = standby.undrain(name)
    return {"name": name, **view, "replicas": balancer.describe() if balancer is not None else None}


async def termination_notice(request: Request) -> Response:
    by = _notice_reader(request)
    body = await _body(request, required=True)
    deployment = _text(body, "deployment", None)
    if not deployment:
        raise InvalidRequest("deployment: the name of the deployment being interrupted", param="deployment")
    standby, name = _target(request, deployment)
    reason = _text(body, "reason", "spot-interruption") or "spot-interruption"
    not_after = body.get("not_after")
    if not_after is not None and (isinstance(not_after, bool) or not isinstance(not_after, int | float)):
        raise InvalidRequest("not_after: epoch seconds (a number) or null", param="not_after")
    endpoint = _text(body, "endpoint", None)
    deadline = None if not_after is None else float(not_after)
    view = await _apply(request, standby, name, endpoint, drained=True, reason=reason, by=by, not_after=deadline,
                        via="termination-notice")  # fmt: skip
    audit.warning(
        "termination notice deployment=%s endpoint=%s reason=%s not_after=%s by=%s",
        name, endpoint, reason, not_after, by,
    )  # fmt: skip
    return _json(view)


def _notice_reader(request: Request) -> str:
    if is_admin(request):
        return actor_of(request)
    token = state_of(request).metrics_token
    given = bearer_of(request)
    if token is not None and given and hmac.compare_digest(given.encode(), token.encode()):
        return "metrics-token"
    raise AuthError("A termination notice needs the admin key or the metrics token (Authorization: Bearer ...).")


def _target(request: Request, name: str) -> tuple[Standby, str]:
    state = state_of(request)
    standby = state.pipeline.caller.standby
    if standby is None:
        raise ServiceUnavailable("This gateway cannot drain deployments.")
    if name not in state.pipeline.caller.providers:
        raise NotFound(f"No deployment is named {name[:64]!r}.", param="name")
    return standby, name


async def _body(request: Request, *, required: bool) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip() and not required:
        return {}
    if len(raw) > _MAX_BODY:
        raise InvalidRequest(f"The body is over {_MAX_BODY} bytes.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body is not JSON.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return body


def _text(body: dict[str, Any], key: str, default: str | None) -> str | None:
    value = body.get(key, default)
    if value is not None and (not isinstance(value, str) or len(value) > 200):
        raise InvalidRequest(f"{key}: a string of at most 200 characters", param=key)
    return value


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")
