"""Rollouts over HTTP (docs/rollouts.md):
- `/admin/rollouts` (admin key): list and start; `/admin/rollouts/{ref}` status, `/history`, and
  `POST /admin/rollouts/{ref}/promote|pause|resume|abort`; `{ref}` is a rollout id or a model group.
- `/admin/rollouts/{ref}/verdict`: margin's analysis for Kubernetes rollout controllers. GET always
  answers 200 with `{"verdict": "pass" | "fail" | "inconclusive", ...}` (Argo Rollouts' web metric
  provider reads the field); POST (Flagger's webhook) answers 200 unless the verdict is fail (412).
- `POST /v1/feedback {request_id, score, comment}`: any client (its key, as for /v1/*), 404 for a
  request id the gateway does not know.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from margin.api.admin import require_admin
from margin.api.body import read_json, validate
from margin.api.ids import new_request_id
from margin.api.state import state_of
from margin.errors import NotFound, ServiceUnavailable
from margin.pipeline.context import RequestContext
from margin.pipeline.rollout_stage import RolloutStage
from margin.rollout.service import RolloutService
from margin.rollout.views import record_view, status_view, transition_view, verdict_view

_NO_STORE = {"cache-control": "no-store"}
_ACTOR = "admin-api"


class StartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model_group: str = Field(min_length=1, max_length=200)
    candidate: str = Field(min_length=1, max_length=200)
    stable: str | None = Field(None, min_length=1, max_length=200)
    skip_gate: bool = Field(False, description="start without the offline gate (else it waits in pending)")


class ActionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2000)
    full: bool = False  # promote only: straight to promoted


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=200)
    score: float = Field(ge=0, le=1, strict=True)
    comment: str = Field("", max_length=4000)


def _stage(request: Request) -> RolloutStage:
    stage = state_of(request).pipeline.router.rollouts
    if stage is None:
        raise ServiceUnavailable("Rollouts are not available on this gateway.")
    return stage


def _service(request: Request) -> RolloutService:
    require_admin(request)
    return _stage(request).engine.service


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=_NO_STORE)


async def rollouts(request: Request) -> Response:
    service = _service(request)
    if request.method == "GET":
        live = [r for r in await service.store.current() if not r.terminal]
        views = [status_view(r, await service.store.windows(r.rollout_id), time.time()) for r in live]
        recent = [record_view(r) for r in await service.store.recent(limit=20)]
        return _json({"rollouts": views, "recent": recent})
    body = await read_json(request, 64 * 1024)
    start = validate(StartBody, body)
    record = await service.start(start.model_group, start.candidate, stable=start.stable, actor=_ACTOR)
    if start.skip_gate:
        reason = "offline gate skipped (admin API)"
        record = await service.record_gate(record.rollout_id, passed=True, actor=_ACTOR, reason=reason,
                                           verdict={"skipped": True})  # fmt: skip
    await _stage(request).engine.refresh()
    return _json(record_view(record), 201)


async def rollout(request: Request) -> Response:
    service = _service(request)
    record = await service.find(request.path_params["ref"])
    return _json(status_view(record, await service.store.windows(record.rollout_id), time.time()))


async def history(request: Request) -> Response:
    record, entries = await _service(request).history(request.path_params["ref"])
    return _json({"rollout": record_view(record), "transitions": [transition_view(e) for e in entries]})


async def action(request: Request) -> Response:
    service = _service(request)
    ref, name = request.path_params["ref"], request.path_params["action"]
    body = await read_json(request, 64 * 1024) if await request.body() else {}
    act = validate(ActionBody, body)
    if name == "promote":
        record = await service.promote(ref, actor=_ACTOR, full=act.full, reason=act.reason)
    elif name == "pause":
        record = await service.pause(ref, actor=_ACTOR, reason=act.reason)
    elif name == "resume":
        record = await service.resume(ref, actor=_ACTOR, reason=act.reason)
    elif name == "abort":
        record = await service.abort(ref, actor=_ACTOR, reason=act.reason)
    else:
        raise NotFound(f"No rollout action {name[:32]!r}: promote, pause, resume or abort.", param="action")
    await _stage(request).engine.refresh()  # this replica applies it at once; the others at their refresh
    return _json(record_view(record))


async def verdict(request: Request) -> Response:
    service = _service(request)
    record = await service.find(request.path_params["ref"])
    view = verdict_view(record, await service.store.windows(record.rollout_id), time.time())
    status = 412 if request.method == "POST" and view["verdict"] == "fail" else 200
    return _json(view, status)


async def feedback(request: Request) -> Response:
    """Any client may score an answer it received (with its key, when keys are required)."""
    state = state_of(request)
    auth = request.headers.get("authorization")
    key = auth[7:] if auth and auth[:7].lower() == "bearer " else request.headers.get("x-api-key")
    await state.pipeline.auth.authenticate(RequestContext(request_id=new_request_id(), endpoint="chat", api_key=key))
    body = await read_json(request, 64 * 1024)
    given = validate(FeedbackBody, body)
    kept = await _stage(request).feedback.give(given.request_id, given.score, given.comment)
    return _json({"request_id": kept.request_id, "accepted": True, "rollout_id": kept.rollout_id, "arm": kept.arm})
