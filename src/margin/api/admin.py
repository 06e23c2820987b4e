"""Admin endpoints. Never reachable with a client key: they need the admin key, or, when none is
configured, a caller on this machine (the embedded default's single-machine case). A request that
came through a proxy is never "this machine" unless the proxy is trusted (`api.client_address`)."""

from __future__ import annotations

import hmac

import orjson
from starlette.requests import Request
from starlette.responses import Response

from margin.api.body import read_json
from margin.api.client_address import ClientAddress, client_of, parse_ip
from margin.api.state import state_of
from margin.caching.entry import Invalidation
from margin.errors import AuthError, InvalidRequest, PermissionDenied
from margin.identity.keys import SCHEME
from margin.ledger.report import admin_spend


def require_admin(request: Request) -> None:
    expected = state_of(request).admin_key
    if expected is None:
        client = client_of(request)
        if not client.local:
            raise PermissionDenied(_not_local_message(client))
        if _presents_client_key(request):  # loopback trusts the machine's operator, never a client key
            raise PermissionDenied("A client API key never opens admin endpoints.")
        return
    auth = request.headers.get("authorization", "")
    given = auth[7:] if auth[:7].lower() == "bearer " else request.headers.get("x-admin-key", "")
    if not given:
        raise AuthError("This admin endpoint needs the admin key (Authorization: Bearer ...).")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise PermissionDenied("The key given is not the admin key.")


def _not_local_message(client: ClientAddress) -> str:
    message = "Admin endpoints answer only callers on this machine until server.admin_key is configured"
    if client.forwarded and not client.trusted_proxy:
        return message + " (this request came through a proxy that is not in server.trusted_proxies)."
    if client.trusted_proxy and parse_ip(client.host) is not None:  # an address, never raw header text
        return message + f" (this request's client, as the trusted proxy names it: {client.host})."
    return message + "."


def _presents_client_key(request: Request) -> bool:
    auth = request.headers.get("authorization", "")
    given = auth[7:] if auth[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
    return given.startswith(SCHEME)


async def spend(request: Request) -> Response:
    """`GET /admin/spend?since=7d&until=now&by=model`: the same figures as `margin report`."""
    require_admin(request)
    try:
        body = await admin_spend(state_of(request).ledger, dict(request.query_params))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return Response(orjson.dumps(body), media_type="application/json")


async def invalidate_cache(request: Request) -> Response:
    """`POST /admin/cache/invalidate` with any of {"tenant", "model", "tag", "key_prefix"}."""
    require_admin(request)
    cache = state_of(request).pipeline.cache
    if cache is None:
        raise InvalidRequest("The cache is disabled in this gateway's configuration.")
    body = await read_json(request, 64 * 1024)
    fields = {k: body[k] for k in ("tenant", "model", "tag", "key_prefix") if isinstance(body.get(k), str)}
    if not fields:
        raise InvalidRequest("Name what to invalidate: tenant, model, tag and/or key_prefix.", param="tenant")
    removed = await cache.invalidate(Invalidation(**fields))
    return Response(orjson.dumps({"invalidated": removed, "selector": fields}), media_type="application/json")
