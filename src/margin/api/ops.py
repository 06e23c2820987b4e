"""Operational endpoints: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from margin.api.access import is_admin, require_metrics_reader
from margin.api.openapi import openapi_document
from margin.api.state import state_of


async def healthz(request: Request) -> Response:
    # Liveness only: answers from the event loop even while the local model generates on its thread.
    return Response(b'{"status":"ok"}', media_type="application/json")


async def readyz(request: Request) -> Response:
    # Ready while some deployment answers, unless this replica itself is wedged: a stuck local
    # worker does not heal on its own, so traffic should go to replicas that can still use theirs.
    # Public (probes call it without a key), so it answers from health probed at a bounded rate and
    # names deployments only to the admin (docs/security.md).
    state = state_of(request)
    health = await state.health()
    stuck = state.stuck()
    ready = bool(health) and any(health.values()) and not stuck
    body: dict[str, object] = {"status": "ready" if ready else "unavailable"}
    if is_admin(request):
        body["deployments"] = health
        if stuck:
            body["stuck"] = stuck
    return Response(orjson.dumps(body), status_code=200 if ready else 503, media_type="application/json")


async def metrics(request: Request) -> Response:
    require_metrics_reader(request)  # spend by team is an operator's view
    metrics = state_of(request).metrics
    await metrics.refresh()  # circuit and budget gauges read their stores (bounded by a timeout)
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def autoscale(request: Request) -> Response:
    """KEDA's metrics-api scaler reads `deployments.<name>.desired_replicas` here (docs/deploy.md); the
    same readers as /metrics may (its token), and it serves the autoscaler's last result, computed
    off the request path."""
    require_metrics_reader(request)
    autoscaler = state_of(request).autoscale
    body = autoscaler.keda() if autoscaler is not None else {"deployments": {}}
    return Response(orjson.dumps(body), media_type="application/json")


async def openapi(request: Request) -> Response:
    return Response(orjson.dumps(openapi_document()), media_type="application/json")
