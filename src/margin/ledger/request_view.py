"""One request explained after the fact, from its ledger rows: who sent it, what the route stage
decided and why (policy, rule or score and threshold), the fallbacks taken and why, the cache
decision and similarity, and every attempt with its cost. `GET /admin/requests/{id}` and
`margin requests show|list` both render these dictionaries.

The decision is what the request's last row keeps in `extra`
(`margin.pipeline.route_labels.decision_extra`). Prompts and answers are never in the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from margin.ledger.report import parse_when
from margin.storage.ledger_row import LedgerRow
from margin.storage.protocols import LedgerStore
from margin.storage.request_log import RequestQuery, decode_cursor, encode_cursor

# `extra` keys that explain a request, in the order they are shown.
DECISION_KEYS = (
    "route", "route_reason", "route_tier", "route_chosen", "route_cascade", "route_cascade_check",
    "route_overflow", "fallback_from", "fallback_reason", "fallback_degraded", "cache", "cache_similarity",
    "rollout", "rollout_arm", "rollout_step",
)  # fmt: skip
STATUSES = ("ok", "error", "cancelled", "unreconciled", "refused")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def decision_of(row: LedgerRow) -> dict[str, str]:
    return {key: row.extra[key] for key in DECISION_KEYS if key in row.extra}


def attempt_view(row: LedgerRow) -> dict[str, Any]:
    return {
        "attempt_index": row.attempt_index,
        "started_at": _when(row.ts),
        "deployment": row.deployment,
        "model": row.model,
        "status": row.status,
        "error_class": row.error_class,
        "is_final": row.is_final,
        "latency_ms": round(row.latency_ms, 3),
        "ttft_ms": None if row.ttft_ms is None else round(row.ttft_ms, 3),
        "input_tokens": row.input_uncached + row.input_cache_read + row.input_cache_write,
        "output_tokens": row.output + row.output_reasoning,
        "cost_usd": str(row.cost_total),
        "price_basis": row.price_basis,
        "cache_result": row.cache_result,
    }


def summary_view(last: LedgerRow, rows: Sequence[LedgerRow] = ()) -> dict[str, Any]:
    """A request by its last row; given all its rows, `cost_usd` is their sum (what was billed),
    otherwise the row's own cost is shown as `last_attempt_cost_usd`."""
    cost = (
        {"cost_usd": str(sum((row.cost_total for row in rows), Decimal(0)))}
        if rows
        else {"last_attempt_cost_usd": str(last.cost_total)}
    )
    return {
        "request_id": last.request_id,
        "at": _when(last.ts),
        "endpoint": last.endpoint,
        "key_id": last.key_id,
        "team": last.team,
        "user": last.user,
        "model_group": last.model_group,
        "route_policy": last.route_policy,
        "deployment": last.deployment,
        "status": last.status,
        "error_class": last.error_class,
        "attempts": last.attempt_index + 1,
        **cost,
        "cache_result": last.cache_result,
        "decision": decision_of(last),
    }


async def explain_request(store: LedgerStore, request_id: str) -> dict[str, Any] | None:
    """The request's summary with every attempt, or None when the ledger has no row for it."""
    rows = await store.request_rows(request_id)
    if not rows:
        return None
    return {**summary_view(rows[-1], rows), "attempt_rows": [attempt_view(row) for row in rows]}


def request_query(params: Mapping[str, str], *, now: datetime | None = None) -> RequestQuery:
    """A list query from `team`, `status`, `since` (now, 24h, 7d, an ISO date...), `limit` and
    `cursor` (a previous page's `next_cursor`). Raises ValueError naming what is wrong."""
    unknown = sorted(set(params) - {"team", "status", "since", "limit", "cursor"})
    if unknown:
        raise ValueError(f"unknown query parameter(s): {', '.join(unknown)}")
    status = params.get("status", "")
    if status and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    since = params.get("since")
    limit_text = params.get("limit", "50")
    if not limit_text.isdigit():
        raise ValueError(f"limit must be a whole number, got {limit_text!r}")
    cursor = params.get("cursor")
    return RequestQuery(
        team=params.get("team", ""),
        status=status,
        since=parse_when(since, now or datetime.now(UTC)).timestamp() if since else None,
        before=decode_cursor(cursor) if cursor else None,
        limit=int(limit_text),
    )


async def list_requests(store: LedgerStore, query: RequestQuery) -> dict[str, Any]:
    """One page, newest first; `next_cursor` is null on the last page."""
    rows = await store.list_requests(query)
    more = len(rows) == query.limit
    return {
        "object": "list",
        "data": [summary_view(row) for row in rows],
        "next_cursor": encode_cursor(rows[-1].ts, rows[-1].attempt_id) if more and rows else None,
    }
