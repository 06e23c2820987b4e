"""The one error handler: every failure becomes the OpenAI envelope (Anthropic's on /v1/messages),
with the right status, and never a traceback."""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from margin import errors
from margin.api.ids import new_request_id
from margin.errors import shown
from margin.translate import anthropic_error_body

log = logging.getLogger("margin.api")


def request_id_of(request: Request) -> str:
    rid = request.scope.get("margin.request_id")
    if not isinstance(rid, str):
        rid = new_request_id()
        request.scope["margin.request_id"] = rid
    return rid


def render(request: Request, error: errors.MarginError) -> Response:
    rid = request_id_of(request)
    if request.url.path.startswith("/v1/messages"):
        body = anthropic_error_body(error, request_id=rid)
    else:
        body = error.to_openai()
    headers = {"x-request-id": rid, **error.headers}
    return Response(orjson.dumps(body), status_code=error.status, media_type="application/json", headers=headers)


async def margin_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.MarginError)
    return render(request, exc)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return render(
            request, errors.MethodNotAllowed(f"{shown(request.method)} is not allowed on {shown(request.url.path)}.")
        )
    if exc.status_code == 404:
        return render(request, errors.NotFound(f"There is no endpoint at {shown(request.url.path)}."))
    return render(request, errors.InvalidRequest(str(exc.detail)))


async def unexpected_error_handler(request: Request, exc: Exception) -> Response:
    # A bug in margin: logged with its traceback for the operator, a plain envelope for the client.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return render(request, errors.MarginError("The gateway hit an internal error; it has been logged."))
