"""`/v1/messages/batches`, Anthropic-compatible: create, retrieve, list, cancel, results (JSONL).
Thin handlers over margin.batch.anthropic; errors in Anthropic's envelope (api/errors.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from margin.api.body import read_json
from margin.api.files import caller, json_response, page_limit, tier_of
from margin.batch.anthropic import API, message_batch_object
from margin.storage.batches import BatchRecord


def _results_url(request: Request, batch_id: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/v1/messages/batches/{batch_id}/results"


def _shown(request: Request, record: BatchRecord) -> Response:
    return json_response(message_batch_object(record, _results_url(request, record.batch_id)))


async def create(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    body = await read_json(request, tier.settings.max_file_bytes)
    return _shown(request, await tier.messages.create(principal, body))


async def retrieve(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    return _shown(request, await tier.batches.get(principal.key_id, request.path_params["batch_id"], api=API))


async def listing(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    after = request.query_params.get("after_id")
    page = await tier.batches.list(principal.key_id, after=after, limit=page_limit(request, most=1000), api=API)
    data = [message_batch_object(r, _results_url(request, r.batch_id)) for r in page.items]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return json_response({"data": data, "has_more": page.has_more, "first_id": first, "last_id": last})


async def cancel(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    return _shown(request, await tier.batches.cancel(principal.key_id, request.path_params["batch_id"], api=API))


async def results(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    lines = await tier.messages.results(principal.key_id, request.path_params["batch_id"])
    return StreamingResponse(lines, media_type="application/binary")
