"""`GET /admin/drift/history?group=&limit=` (admin key): the scheduled re-evaluations of production
samples, newest first, as the database keeps them (docs/evals.md, "Production samples")."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from margin.api.admin import require_admin
from margin.api.state import state_of
from margin.errors import InvalidRequest, NotFound, ServiceUnavailable, shown
from margin.rollout.drift import drift_view

MAX_LIMIT = 1000


def _limit(raw: str | None) -> int:
    if raw is None:
        return 50
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}.", param="limit")
    return int(raw)


async def history(request: Request) -> Response:
    require_admin(request)
    state = state_of(request)
    stage = state.pipeline.router.rollouts
    if stage is None:
        raise ServiceUnavailable("Rollouts (and the drift history) are not available on this gateway.")
    group = request.query_params.get("group") or None
    limit = _limit(request.query_params.get("limit"))
    if group is not None and not any(g.name == group for g in state.config.models):
        raise NotFound(f"No model group {shown(group)} is configured.", param="group")
    runs = await stage.engine.service.store.drift_runs(model_group=group, limit=limit)
    body = {"object": "list", "data": [drift_view(r) for r in runs]}
    return Response(orjson.dumps(body), media_type="application/json", headers={"cache-control": "no-store"})
