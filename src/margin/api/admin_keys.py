"""`/admin/keys`: create, list, rotate and revoke virtual keys. Admin key only (see `require_admin`).

The secret is in the response to create and rotate, once; afterwards only its prefix is shown."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from margin.api.admin import require_admin
from margin.api.body import read_json, validate
from margin.api.state import state_of
from margin.errors import NotFound, ServiceUnavailable
from margin.identity.key_spec import KeySpec
from margin.identity.principals import public_view
from margin.identity.service import KeyService

_NO_STORE = {"cache-control": "no-store"}


class RotateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_s: float = Field(0.0, ge=0, le=30 * 86400, description="the old secret keeps working this long")


def _keys(request: Request) -> KeyService:
    require_admin(request)
    keys = state_of(request).pipeline.limits.keys
    if keys is None:
        raise ServiceUnavailable("This gateway has no key store.")
    return keys


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=_NO_STORE)


async def keys_collection(request: Request) -> Response:
    keys = _keys(request)
    if request.method == "GET":
        return _json({"object": "list", "data": [public_view(k) for k in await keys.list()]})
    raw = await read_json(request, 64 * 1024)
    spec = validate(KeySpec, raw)
    record, secret = await keys.create(spec)
    return _json({"key": secret, **public_view(record)}, status=201)


async def rotate(request: Request) -> Response:
    keys = _keys(request)
    has_body = request.headers.get("content-length", "0") not in ("0", "")
    body = validate(RotateBody, await read_json(request, 4096)) if has_body else RotateBody()
    rotated = await keys.rotate(request.path_params["key_id"], grace_s=body.grace_s)
    if rotated is None:
        raise NotFound("No active key has this id.")
    record, secret = rotated
    return _json({"key": secret, **public_view(record)})


async def revoke(request: Request) -> Response:
    keys = _keys(request)
    record = await keys.revoke(request.path_params["key_id"])
    if record is None:
        raise NotFound("No key has this id.")
    return _json(public_view(record))
