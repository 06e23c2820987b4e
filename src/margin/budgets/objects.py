"""Teams, budgets and rate limits as objects (docs/teams.md): what each kind is, its id and unique
key, the ones a config file declares, and how the admin API and the CLI see them.

Two sources, one view. Objects declared in the config file (`teams:`, `budgets:`, `rate_limits:`)
are `source: config`: each replica reads them from its own file, they change on reload, and the API
and CLI may read them but never change them (409: change the file and reload). Objects created over
the API or the CLI are `source: api`, stored in the database and read by every replica. A new object
whose id or unique key a config object holds is refused (409), so neither source silently
overwrites the other."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from margin.config.limits import BudgetConfig, RateLimitConfig, TeamConfig
from margin.storage.teams import Action, Change, ObjectKind, StoredObject

Source = Literal["api", "config"]
SPECS: dict[ObjectKind, type[BaseModel]] = {"team": TeamConfig, "budget": BudgetConfig, "limit": RateLimitConfig}
ID_PREFIX: dict[ObjectKind, str] = {"team": "", "budget": "bud_", "limit": "lim_"}
NOUN: dict[ObjectKind, str] = {"team": "team", "budget": "budget", "limit": "rate limit"}


@dataclass(frozen=True, slots=True)
class Declared:
    """One object as the API shows it, from either source."""

    kind: ObjectKind
    object_id: str
    unique_key: str
    body: Mapping[str, Any]
    source: Source
    created_at: float | None = None  # None: declared in the config file
    updated_at: float | None = None
    version: int = 0


def unique_key(kind: ObjectKind, spec: BaseModel) -> str:
    """What may not be declared twice: a team's name; a budget's scope, unit and window (its counter);
    a rate limit's scope."""
    if isinstance(spec, TeamConfig):
        return spec.name
    if isinstance(spec, BudgetConfig):
        unit = "usd" if spec.limit_usd is not None else "tokens"
        window = f"rolling{spec.hours}h" if spec.window == "rolling" else spec.window
        return f"{spec.scope}|{unit}|{window}"
    assert isinstance(spec, RateLimitConfig)
    return spec.scope


def body_of(spec: BaseModel) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


def spec_of(kind: ObjectKind, body: Mapping[str, Any]) -> BaseModel:
    """The spec a stored body describes; ValueError when this version cannot read it."""
    try:
        return SPECS[kind].model_validate(dict(body))
    except ValidationError as exc:
        raise ValueError(f"{NOUN[kind]}: unreadable body ({exc.error_count()} problems)") from None


def config_id(kind: ObjectKind, key: str) -> str:
    """A config object's id: a team's name, else derived from its unique key (stable across reorders)."""
    if kind == "team":
        return key
    return f"{ID_PREFIX[kind]}cfg_{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def config_objects(teams: Iterable[TeamConfig], budgets: Iterable[BudgetConfig],
                   rates: Iterable[RateLimitConfig]) -> list[Declared]:  # fmt: skip
    """What a config file declares, as objects (a unique key declared twice keeps both, ids `-2`...)."""
    found: list[Declared] = []
    seen: set[str] = set()
    groups: tuple[tuple[ObjectKind, Iterable[BaseModel]], ...] = (("team", teams), ("budget", budgets),
                                                                    ("limit", rates))  # fmt: skip
    for kind, specs in groups:
        for spec in specs:
            key = unique_key(kind, spec)
            object_id, n = config_id(kind, key), 1
            while f"{kind}/{object_id}" in seen:
                n += 1
                object_id = f"{config_id(kind, key)}-{n}"
            seen.add(f"{kind}/{object_id}")
            found.append(Declared(kind, object_id, key, body_of(spec), "config"))
    return found


def stored_declared(obj: StoredObject) -> Declared:
    return Declared(obj.kind, obj.object_id, obj.unique_key, obj.body, "api", obj.created_at, obj.updated_at,
                    obj.version)  # fmt: skip


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def object_view(obj: Declared) -> dict[str, Any]:
    """What the API and the CLI show for one object."""
    return {
        "object": NOUN[obj.kind].replace(" ", "_"),
        "id": obj.object_id,
        **obj.body,
        "source": obj.source,
        "read_only": obj.source == "config",
        "created_at": _iso(obj.created_at),
        "updated_at": _iso(obj.updated_at),
        "version": obj.version,
    }


def change_view(change: Change) -> dict[str, Any]:
    return {
        "seq": change.seq,
        "at": _iso(change.at),
        "actor": change.actor,
        "kind": change.kind,
        "id": change.object_id,
        "action": change.action,
        "before": None if change.before is None else dict(change.before),
        "after": None if change.after is None else dict(change.after),
    }


def config_changes(old: Iterable[Declared], new: Iterable[Declared], at: float) -> list[Change]:
    """What a reload changed among config objects, as audit rows by the actor `config`."""
    before = {(d.kind, d.object_id): d for d in old}
    after = {(d.kind, d.object_id): d for d in new}
    changes = []
    for ref in sorted(before.keys() | after.keys()):
        was, now = before.get(ref), after.get(ref)
        was_body = None if was is None else dict(was.body)
        now_body = None if now is None else dict(now.body)
        if was_body == now_body:
            continue
        action: Action = "create" if was is None else "delete" if now is None else "update"
        changes.append(Change(at, "config", ref[0], ref[1], action, was_body, now_body))
    return changes
