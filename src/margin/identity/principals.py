"""A key record as the request path sees it (a Principal) and as admins see it (no secret, no hash)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal, cast

from margin.errors import InvalidRequest, shown
from margin.storage.protocols import KeyRecord
from margin.types import Principal


def principal_of(record: KeyRecord) -> Principal:
    return Principal(
        key_id=record.key_id,
        org=record.org,
        team=record.team,
        user=record.user,
        tags=record.tags,
        endpoint_class=cast(Literal["interactive", "batch"], record.endpoint_class),
        allowed_models=record.allowed_models,
        allowed_cost_ranks=record.allowed_tiers,
    )


# What a request may declare it is for (`x-margin-purpose`), and what that adds to its principal: a
# tag (its ledger rows, reports and tag budgets see it) and endpoint class batch (it yields to
# interactive traffic). A purpose only ever adds: the key's own tags, budgets and limits still apply.
# `whatif`: `margin whatif run`'s sampled calls to the cheaper tiers and their judge (docs/whatif.md).
PURPOSES: dict[str, tuple[str, Literal["interactive", "batch"]]] = {
    "eval": ("eval", "batch"),
    "whatif": ("whatif", "batch"),
    "tuning": ("tuning", "batch"),  # a distillation dataset's teacher calls (docs/tuning.md)
}


def for_purpose(principal: Principal, purpose: str | None) -> Principal:
    """`principal` as a request declaring `purpose` runs; an unknown purpose is refused."""
    if purpose is None:
        return principal
    declared = PURPOSES.get(purpose.strip().lower())
    if declared is None:
        known = ", ".join(sorted(PURPOSES))
        raise InvalidRequest(
            f"x-margin-purpose {shown(purpose)} is not known (known: {known})", param="x-margin-purpose"
        )
    tag, endpoint_class = declared
    tags = principal.tags if tag in principal.tags else (*principal.tags, tag)
    return replace(principal, tags=tags, endpoint_class=endpoint_class)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def public_view(record: KeyRecord) -> dict[str, Any]:
    """What `GET /admin/keys` and `margin keys list` show: never the secret nor its hash."""
    return {
        "key_id": record.key_id,
        "prefix": record.prefix,
        "name": record.name,
        "org": record.org,
        "team": record.team,
        "user": record.user,
        "tags": list(record.tags),
        "endpoint_class": record.endpoint_class,
        "allowed_models": list(record.allowed_models),
        "allowed_cost_ranks": list(record.allowed_tiers),
        "allowed_tiers": list(record.allowed_tiers),  # deprecated spelling, until the next release
        "policy": dict(record.policy),
        "created_at": _iso(record.created_at),
        "rotated_at": _iso(record.rotated_at),
        "revoked_at": _iso(record.revoked_at),
        "status": "revoked" if record.revoked_at is not None else "active",
    }
