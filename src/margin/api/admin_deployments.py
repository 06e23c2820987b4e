"""`GET /admin/deployments`: each deployment's circuit, load and limits, as the gateway sees them now.

`margin models --url` renders this; the soak benchmark reads `runtime` to check for leaked tasks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from margin.api.admin import require_admin
from margin.api.state import state_of
from margin.providers.balance import Balancer
from margin.providers.base import Provider
from margin.providers.discovery import Discovery
from margin.resilience.circuit import CircuitView


async def deployments(request: Request) -> Response:
    require_admin(request)
    state = state_of(request)
    caller = state.pipeline.caller
    res = caller.resilience
    views = await res.circuits.views({name: limits.circuit for name, limits in res.limits.items()})
    groups: dict[str, list[str]] = {}
    for group in state.config.models:
        for name in group.deployments:
            groups.setdefault(name, []).append(group.name)
    by_name = {d.name: d for d in state.config.deployments}
    scaling = state.autoscale.signals if state.autoscale is not None else {}
    data = []
    for view in views:
        d = by_name[view.deployment]
        data.append(
            {
                "name": d.name,
                "provider": d.provider,
                "model": d.model,
                "cost_rank": d.cost_rank,
                "tier": d.cost_rank,  # deprecated spelling of cost_rank, until the next release
                "groups": groups.get(d.name, []),
                "in_flight": caller.in_flight.get(d.name, 0),
                "max_attempts_per_second": d.max_attempts_per_second,
                "circuit": _circuit(view),
                "timeouts": res.latency.describe(d.name, d.timeouts),  # the measured stream timeouts
                "autoscale": scaling[d.name].as_json() if d.name in scaling else None,  # docs/deploy.md
                "replicas": _replicas(state.providers[d.name]),  # `endpoints:` and how calls spread over them
                "discovery": _discovery(state.providers[d.name]),  # `endpoints_from:` resolutions and failures
                "standby": caller.standby.describe(d.name) if caller.standby is not None else None,  # cold/drained
            }
        )
    runtime = {"tasks": len(asyncio.all_tasks()), "draining": len(caller.background)}
    body = {"object": "list", "data": data, "runtime": runtime}
    return Response(orjson.dumps(body), media_type="application/json")


def _replicas(provider: Provider) -> list[dict[str, object]] | None:
    balancer: Balancer | None = getattr(provider, "balancer", None)
    shown = balancer is not None and (len(balancer.endpoints) > 1 or balancer.discovered)  # discovered: even one
    return balancer.describe() if balancer is not None and shown else None


def _discovery(provider: Provider) -> dict[str, object] | None:
    discovery: Discovery | None = getattr(provider, "discovery", None)
    return discovery.describe() if discovery is not None else None


def _circuit(view: CircuitView) -> dict[str, Any]:
    return {
        "state": view.state.value,
        "failures": view.failures,
        "times_opened": view.times_opened,
        "opened_s_ago": view.opened_s_ago,
        "probe_in_s": view.probe_in_s,
        "last_error": view.last_error,
    }
