"""`GET /admin/requests` and `GET /admin/requests/{request_id}`: the per-request log, explained.

Read from the ledger (`margin.ledger.request_view`); the request id is the one every response
carries in `x-request-id`. Prompts and answers are never stored, so never shown."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from margin.api.admin import require_admin
from margin.api.state import state_of
from margin.errors import InvalidRequest, NotFound
from margin.ledger.request_view import explain_request, list_requests, request_query


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json", headers={"cache-control": "no-store"})


async def request_list(request: Request) -> Response:
    """`?team=&status=&since=24h&limit=50&cursor=`: newest first, one page at a time."""
    require_admin(request)
    try:
        query = request_query(dict(request.query_params))
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    return _json(await list_requests(state_of(request).ledger, query))


async def request_detail(request: Request) -> Response:
    require_admin(request)
    request_id = request.path_params["request_id"]
    found = await explain_request(state_of(request).ledger, request_id)
    if found is None:
        raise NotFound(f"The ledger has no request {request_id!r} (rows reach it within a second or two).")
    return _json(found)
