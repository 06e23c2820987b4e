"""Ledger rows for attempts whose outcome nobody knows: the replica that made them died after they
went upstream and before their rows reached the journal.

Each such attempt still gets its row (so upstream calls = ledger rows), with status and price basis
`unreconciled`, no usage, and the request's reserved worst case as its cost (on its last attempt;
the budget counters were charged the same amount), until `margin reconcile` replaces that figure
with the actual one. A request no limit applied to has no reserved figure: its rows say
price_unknown, never a silent zero.

The row fields known at admission travel as a plain mapping (`row_fields`), in the reservation's
payload (margin.budgets.intents) and the journal's `req` line; attempt marks as `attempt_mark`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from margin.storage.ledger_row import LedgerRow

UNRECONCILED: Final = "unreconciled"
_NANO = Decimal(10) ** 9


def row_fields(
    *,
    request_id: str,
    ts: float,
    endpoint: str,
    key_id: str,
    org: str,
    team: str,
    user: str,
    tags: Sequence[str],
    endpoint_class: str,
    model_group: str,
    route_policy: str,
) -> dict[str, Any]:
    return {
        "request_id": request_id, "ts": ts, "endpoint": endpoint, "key_id": key_id, "org": org, "team": team,
        "user": user, "tags": list(tags), "endpoint_class": endpoint_class, "model_group": model_group,
        "route_policy": route_policy,
    }  # fmt: skip


def attempt_mark(*, index: int, deployment: str, model: str, cost_rank: int | None, ts: float) -> dict[str, Any]:
    return {"i": index, "d": deployment, "m": model, "r": cost_rank, "t": ts}


def unreconciled_rows(
    fields: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]], cost_nano: int | None, *, why: str
) -> list[LedgerRow]:
    """One row per attempt mark; the reserved `cost_nano` (None: unknown) on the last attempt."""
    marks = sorted({int(m["i"]): m for m in attempts}.items())
    if not marks:
        return []
    last = marks[-1][0]
    request_id = str(fields["request_id"])
    rows = []
    for index, mark in marks:
        charged = Decimal(cost_nano) / _NANO if cost_nano is not None and index == last else Decimal(0)
        extra = {UNRECONCILED: why}
        if cost_nano is not None:
            extra["reserved_usd"] = str(Decimal(cost_nano) / _NANO)
        rows.append(
            LedgerRow(
                attempt_id=f"{request_id}:{index}",
                request_id=request_id,
                attempt_index=index,
                ts=float(mark.get("t") or fields["ts"]),
                endpoint=str(fields["endpoint"]),
                key_id=str(fields["key_id"]),
                org=str(fields["org"]),
                team=str(fields["team"]),
                user=str(fields["user"]),
                tags=tuple(str(t) for t in fields["tags"]),
                endpoint_class=str(fields["endpoint_class"]),
                model_group=str(fields["model_group"]),
                route_policy=str(fields["route_policy"]),
                tier=None if mark.get("r") is None else int(mark["r"]),
                deployment=str(mark["d"]),
                model=str(mark["m"]),
                fallback_index=index,
                is_final=index == last,
                status=UNRECONCILED,
                error_class=None,
                latency_ms=0.0,
                ttft_ms=None,
                tokens_per_s=None,
                usage_source="none",
                cost_total=charged,
                price_basis=UNRECONCILED,
                price_unknown=cost_nano is None,
                extra=extra,
            )
        )
    return rows
