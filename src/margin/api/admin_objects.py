"""`/admin/teams`, `/admin/budgets`, `/admin/limits` (create, list, read, update, delete),
`/admin/audit` (who changed what) and `POST /admin/reload` (the config file's teams, budgets and rate
limits, again). Admin key only (see `require_admin`); docs/teams.md.

Lists are ordered by id, `?limit=` (1-1000, default 100) items a page, `?cursor=` the previous page's
`next_cursor`. A body that does not describe a valid object is a 422 naming every problem; an unknown
id 404; a duplicate, or an object the config file declares, 409."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from margin.api.admin import require_admin
from margin.api.body import read_json, validate
from margin.api.state import state_of
from margin.budgets.live import LiveObjects
from margin.budgets.object_service import ObjectService
from margin.budgets.objects import change_view, object_view
from margin.budgets.reload import read_config_file, reload_objects
from margin.errors import InvalidRequest, ServiceUnavailable, Unprocessable
from margin.identity.keys import public_prefix
from margin.storage.teams import ObjectKind

_NO_STORE = {"cache-control": "no-store"}
_KINDS: dict[str, ObjectKind] = {"teams": "team", "budgets": "budget", "limits": "limit"}
_MAX_BODY = 256 * 1024  # a team may list thousands of members


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=_NO_STORE)


def _validate(model: Any, data: dict[str, Any]) -> Any:
    try:
        return validate(model, data)
    except InvalidRequest as exc:  # every problem, as /admin/keys names them, with the status of a bad object
        raise Unprocessable(exc.message, param=exc.param) from None


def actor_of(request: Request) -> str:
    """Who made a change, for the audit trail: the admin key's prefix (never the key), or the local
    operator when no admin key is configured."""
    if state_of(request).admin_key is None:
        return "admin:local"
    auth = request.headers.get("authorization", "")
    given = auth[7:] if auth[:7].lower() == "bearer " else request.headers.get("x-admin-key", "")
    return f"admin:{public_prefix(given)}" if len(given) >= 24 else "admin"


def _live(request: Request) -> LiveObjects:
    require_admin(request)
    live = state_of(request).pipeline.limits.objects
    if live is None:
        raise ServiceUnavailable("This gateway keeps no teams, budgets or rate limits.")
    return live


def service_of(request: Request) -> ObjectService:
    live = _live(request)
    return ObjectService(live.store, _validate, config=lambda: live.config, changed=live.refresh)


def _kind(request: Request) -> ObjectKind:
    return _KINDS[request.url.path.split("/")[2]]


def _int(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(f"{name}: an integer, not {raw[:32]!r}", param=name) from None


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request, _MAX_BODY)
    if not isinstance(body, dict):
        raise Unprocessable("The body is a JSON object.")
    return body


async def collection(request: Request) -> Response:
    """GET: one page of objects; POST: create one (201)."""
    service, kind = service_of(request), _kind(request)
    if request.method == "POST":
        created = await service.create(kind, await _body(request), actor_of(request))
        return _json(object_view(created), 201)
    page = await service.page(kind, limit=_int(request, "limit", 100) or 0, cursor=request.query_params.get("cursor"))
    return _json({"object": "list", "data": [object_view(d) for d in page.items], "next_cursor": page.next_cursor})


async def item(request: Request) -> Response:
    """GET one; PATCH the fields given; DELETE (answers the object as it was)."""
    service, kind = service_of(request), _kind(request)
    object_id = request.path_params["object_id"]
    if request.method == "GET":
        return _json(object_view(await service.get(kind, object_id)))
    if request.method == "PATCH":
        updated = await service.update(kind, object_id, await _body(request), actor_of(request))
        return _json(object_view(updated))
    gone = await service.delete(kind, object_id, actor_of(request))
    return _json({**object_view(gone), "deleted": True})


async def audit(request: Request) -> Response:
    """`?kind=team|budget|limit|drain&id=&limit=100&cursor=`: changes, newest first."""
    service = service_of(request)
    kind = request.query_params.get("kind")
    if kind is not None and kind not in (*_KINDS.values(), "drain"):
        raise InvalidRequest(f"kind: team, budget, limit or drain, not {kind[:32]!r}", param="kind")
    changes, older = await service.changes(
        kind=kind, object_id=request.query_params.get("id"),
        limit=_int(request, "limit", 100) or 0, before=_int(request, "cursor", None),
    )  # fmt: skip
    return _json({"object": "list", "data": [change_view(c) for c in changes],
                  "next_cursor": None if older is None else str(older)})  # fmt: skip


async def reload(request: Request) -> Response:
    """Read the config file again and apply its teams, budgets and rate limits on this replica."""
    live = _live(request)
    path, config = read_config_file()
    service = ObjectService(live.store, _validate, config=lambda: live.config)
    reloaded = await reload_objects(live, service, state_of(request).config, path, config)
    return _json(reloaded.view())
