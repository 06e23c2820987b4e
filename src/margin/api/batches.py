"""`/v1/batches`, OpenAI-compatible: create, retrieve, list (after, limit), cancel. Thin handlers over
margin.batch.service; lines run later, off the request path."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from margin.api.body import read_json
from margin.api.files import caller, json_response, page_limit, tier_of
from margin.api.state import state_of
from margin.batch.objects import batch_object, list_object
from margin.batch.service import new_batch_from
from margin.identity.principals import for_purpose


async def create_batch(request: Request) -> Response:
    tier = tier_of(request)
    # `x-margin-purpose` (e.g. tuning) tags every line of the batch, as it tags a live request
    principal = for_purpose(await caller(request), request.headers.get("x-margin-purpose"))
    body = await read_json(request, state_of(request).max_body_bytes)
    record = await tier.batches.create(principal, new_batch_from(body))
    return json_response(batch_object(record))


async def get_batch(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    return json_response(batch_object(await tier.batches.get(principal.key_id, request.path_params["batch_id"])))


async def list_batches(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    after = request.query_params.get("after")
    page = await tier.batches.list(principal.key_id, after=after, limit=page_limit(request))
    return json_response(list_object(page.items, batch_object, lambda b: b.batch_id, has_more=page.has_more))


async def retry_failed(request: Request) -> Response:
    """A margin extension: a new batch of the lines of a finished batch that did not succeed."""
    tier = tier_of(request)
    principal = await caller(request)
    return json_response(batch_object(await tier.retries.retry_failed(principal, request.path_params["batch_id"])))


async def cancel_batch(request: Request) -> Response:
    tier = tier_of(request)
    principal = await caller(request)
    return json_response(batch_object(await tier.batches.cancel(principal.key_id, request.path_params["batch_id"])))
