"""Create, read, update and delete teams, budgets and rate limits, each change audited (who, when,
before, after) in the same transaction as the change. Used by the admin API and the CLI alike; the
caller validates bodies (`Validate`) so that each names every problem its own way."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel

from margin.budgets.objects import (
    ID_PREFIX,
    NOUN,
    SPECS,
    Declared,
    body_of,
    stored_declared,
    unique_key,
)
from margin.config.limits import TeamConfig
from margin.errors import Conflict, InvalidRequest, NotFound, Unprocessable
from margin.storage.teams import Change, DuplicateObject, ObjectKind, ObjectStore, StoredObject

M = TypeVar("M", bound=BaseModel)
Validate = Callable[[type[BaseModel], dict[str, Any]], BaseModel]
MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Declared]
    next_cursor: str | None


class ObjectService:
    def __init__(
        self,
        store: ObjectStore,
        validate: Validate,
        *,
        config: Callable[[], list[Declared]] = list,
        changed: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.validate = validate
        self.config = config  # the config file's objects (read-only here)
        self.changed = changed  # applies a change on this replica at once (others at their refresh)
        self.clock = clock

    # --- reads ------------------------------------------------------------------------------------

    async def everything(self, kind: ObjectKind) -> list[Declared]:
        stored = [stored_declared(o) for o in await self.store.objects(kind)]
        return sorted([*(d for d in self.config() if d.kind == kind), *stored], key=lambda d: d.object_id)

    async def page(self, kind: ObjectKind, *, limit: int = 100, cursor: str | None = None) -> Page:
        """Ordered by id; `cursor` is the previous page's last id."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit: between 1 and {MAX_PAGE}", param="limit")
        found = [d for d in await self.everything(kind) if cursor is None or d.object_id > cursor]
        more = len(found) > limit
        items = found[:limit]
        return Page(items, items[-1].object_id if more else None)

    async def get(self, kind: ObjectKind, object_id: str) -> Declared:
        for declared in self.config():
            if declared.kind == kind and declared.object_id == object_id:
                return declared
        stored = await self.store.get(kind, object_id)
        if stored is None:
            raise NotFound(f"No {NOUN[kind]} has the id {object_id!r}.", param="id")
        return stored_declared(stored)

    async def changes(
        self,
        *,
        kind: ObjectKind | None = None,
        object_id: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> tuple[list[Change], int | None]:
        """Newest first; the second item is the cursor for the next (older) page."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit: between 1 and {MAX_PAGE}", param="limit")
        found = await self.store.changes(kind=kind, object_id=object_id, before_seq=before, limit=limit + 1)
        items = found[:limit]
        return items, items[-1].seq if len(found) > limit else None

    # --- changes ----------------------------------------------------------------------------------

    async def create(self, kind: ObjectKind, raw: dict[str, Any], actor: str) -> Declared:
        spec = self.validate(SPECS[kind], raw)
        key = unique_key(kind, spec)
        object_id = key if kind == "team" else f"{ID_PREFIX[kind]}{secrets.token_hex(6)}"
        self._not_declared(kind, object_id, key)
        await self._members_free(spec, None)
        now = self.clock()
        body = body_of(spec)
        obj = StoredObject(kind, object_id, key, body, now, now)
        try:
            await self.store.create(obj, Change(now, actor, kind, object_id, "create", None, body))
        except DuplicateObject:
            raise self._duplicate(kind, key) from None
        await self._changed()
        return stored_declared(obj)

    async def update(self, kind: ObjectKind, object_id: str, patch: dict[str, Any], actor: str) -> Declared:
        """Fields given replace the object's (a member list is replaced whole); the rest stay."""
        current = await self.get(kind, object_id)
        self._writable(current)
        if kind == "team" and "name" in patch and patch["name"] != object_id:
            raise Unprocessable("name: a team's name is its id and cannot change (create another)", param="name")
        spec = self.validate(SPECS[kind], {**current.body, **patch})
        key = unique_key(kind, spec)
        self._not_declared(kind, None, key)
        await self._members_free(spec, object_id)
        now = self.clock()
        body = body_of(spec)
        assert current.created_at is not None
        obj = StoredObject(kind, object_id, key, body, current.created_at, now, current.version + 1)
        change = Change(now, actor, kind, object_id, "update", dict(current.body), body)
        try:
            applied = await self.store.update(obj, current.version, change)
        except DuplicateObject:
            raise self._duplicate(kind, key) from None
        if not applied:
            raise Conflict(f"The {NOUN[kind]} {object_id!r} changed or went while this update ran: read it and retry.")
        await self._changed()
        return stored_declared(obj)

    async def delete(self, kind: ObjectKind, object_id: str, actor: str) -> Declared:
        current = await self.get(kind, object_id)
        self._writable(current)
        change = Change(self.clock(), actor, kind, object_id, "delete", dict(current.body), None)
        if not await self.store.delete(kind, object_id, change):
            raise NotFound(f"No {NOUN[kind]} has the id {object_id!r}.", param="id")
        await self._changed()
        return current

    # --- helpers ----------------------------------------------------------------------------------

    async def _changed(self) -> None:
        if self.changed is not None:
            await self.changed()

    @staticmethod
    def _writable(current: Declared) -> None:
        if current.source == "config":
            raise Conflict(
                f"The {NOUN[current.kind]} {current.object_id!r} is declared in the config file, and objects "
                "declared there are read-only here: change it in the file and reload (SIGHUP or `margin reload`)."
            )

    def _not_declared(self, kind: ObjectKind, object_id: str | None, key: str) -> None:
        for declared in self.config():
            if declared.kind == kind and (declared.object_id == object_id or declared.unique_key == key):
                raise Conflict(
                    f"The config file already declares this {NOUN[kind]} ({_shown(kind, key)}, id "
                    f"{declared.object_id!r}): change it there and reload, or choose another."
                )

    @staticmethod
    def _duplicate(kind: ObjectKind, key: str) -> Conflict:
        return Conflict(f"A {NOUN[kind]} for {_shown(kind, key)} exists already: update it instead.")

    async def _members_free(self, spec: BaseModel, own: str | None) -> None:
        """A key or a user belongs to one team at most."""
        if not isinstance(spec, TeamConfig):
            return
        taken: dict[tuple[str, str], str] = {}
        for team in await self.everything("team"):
            if team.object_id == own:
                continue
            for member_kind in ("keys", "users"):
                for member in _members(team.body, member_kind):
                    taken.setdefault((member_kind, member), team.object_id)
        clashes = [f"{member_kind[:-1]} {member!r} is in team {taken[(member_kind, member)]!r}"
                   for member_kind, members in (("keys", spec.keys), ("users", spec.users)) for member in members
                   if (member_kind, member) in taken]  # fmt: skip
        if clashes:
            which = "a member belongs" if len(clashes) == 1 else f"{len(clashes)} members belong"
            raise Conflict(f"{which} to another team already: " + "; ".join(clashes))


def _members(body: Mapping[str, Any], kind: str) -> list[str]:
    value = body.get(kind, [])
    return [str(v) for v in value] if isinstance(value, list) else []


def _shown(kind: ObjectKind, key: str) -> str:
    if kind == "budget":
        scope, unit, window = key.rsplit("|", 2)
        return f"scope {scope!r}, {unit}, window {window}"
    return f"scope {key!r}" if kind == "limit" else f"name {key!r}"
