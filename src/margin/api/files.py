"""`/v1/files`, OpenAI-compatible: upload (multipart, purpose=batch), list, retrieve, content, delete.
Thin handlers over margin.batch.files; the caller's key owns what it uploads."""

from __future__ import annotations

from typing import Any, Literal, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from margin.api.multipart import MultipartReader, boundary_of
from margin.api.state import state_of
from margin.batch.objects import file_object, list_object
from margin.batch.tier import BatchTier
from margin.errors import InvalidRequest, NotFound, PayloadTooLarge, shown
from margin.storage.batches import FileRecord
from margin.types import Principal

MULTIPART_OVERHEAD = 64 * 1024  # headers and small fields around the file part


def json_response(body: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def tier_of(request: Request) -> BatchTier:
    tier = state_of(request).batches
    if tier is None:
        raise NotFound("Batches are turned off on this gateway (batch.enabled).")
    return tier


async def caller(request: Request) -> Principal:
    """The caller's principal from its key (Authorization: Bearer, or x-api-key)."""
    auth = request.headers.get("authorization")
    key = auth[7:] if auth and auth[:7].lower() == "bearer " else request.headers.get("x-api-key")
    return await state_of(request).pipeline.auth.principal_for(key)


def page_limit(request: Request, default: int = 20, most: int = 100) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise InvalidRequest(f"limit must be a whole number from 1 to {most}.", param="limit")
    return int(raw)


async def create_file(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)  # the key first: a caller without one uploads nothing
    declared = request.headers.get("content-length")
    limit = tier.settings.max_file_bytes
    if declared is not None and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(f"The file is larger than the {limit:,}-byte limit (batch.max_file_bytes).")
    reader = MultipartReader(request.stream(), boundary_of(request.headers.get("content-type")))
    purpose: str | None = None
    stored: FileRecord | None = None
    try:
        async for part in reader.parts():
            if part.name == "purpose" and part.filename is None:
                purpose = tier.files.check_purpose((await part.text()).strip())
            elif part.name == "file" and part.filename is not None and stored is None:
                stored = await tier.files.upload(principal.key_id, part.filename, purpose or "batch", part.chunks())
        if stored is None:
            raise InvalidRequest("The upload has no file part (a form field named 'file').", param="file")
        if purpose is None:
            raise InvalidRequest("purpose is required: upload batch input files with purpose 'batch'.", param="purpose")
    except InvalidRequest:
        if stored is not None:  # the purpose came after the file, and was wrong or missing
            await tier.files.delete(principal.key_id, stored.file_id)
        raise
    return json_response(file_object(stored))


async def list_files(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"order must be asc or desc, not {shown(order)}.", param="order")
    page = await tier.files.list(
        principal.key_id, purpose=request.query_params.get("purpose"), after=request.query_params.get("after"),
        limit=page_limit(request, default=100, most=10_000), order=cast(Literal["asc", "desc"], order),
    )  # fmt: skip
    return json_response(list_object(page.items, file_object, lambda f: f.file_id, has_more=page.has_more))


async def get_file(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    return json_response(file_object(await tier.files.get(principal.key_id, request.path_params["file_id"])))


async def delete_file(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    record = await tier.files.delete(principal.key_id, request.path_params["file_id"])
    return json_response({"id": record.file_id, "object": "file", "deleted": True})


async def file_content(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    record = await tier.files.get(principal.key_id, request.path_params["file_id"])
    headers = {"content-length": str(record.bytes)}
    return StreamingResponse(tier.files.content(record), media_type="application/octet-stream", headers=headers)
