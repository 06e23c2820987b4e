"""`GET /admin/budgets/status`: spend, reserved, limit and reset time per budget scope."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from margin.api.admin import require_admin
from margin.api.dashboard_live import budget_entries
from margin.api.state import state_of


async def budgets(request: Request) -> Response:
    require_admin(request)
    data = await budget_entries(state_of(request).pipeline.limits)
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")
