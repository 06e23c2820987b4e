"""Teams, budgets and rate limits as stored objects (created over the admin API or the CLI), and
the audit trail of every change to them. The store is narrow: whole objects in, whole objects out;
what an object means is `margin.budgets.objects`' business."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

ObjectKind = Literal["team", "budget", "limit", "drain"]  # drain: margin.autoscale.drains
Action = Literal["create", "update", "delete"]


class DuplicateObject(Exception):
    """Another object of this kind has this id or unique key (a team's name, a budget's scope...)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    kind: ObjectKind
    object_id: str
    unique_key: str  # what may not be declared twice within the kind
    body: Mapping[str, Any]  # the validated spec, as JSON
    created_at: float
    updated_at: float
    version: int = 1  # +1 per update: an update names the version it read (compare-and-set)


@dataclass(frozen=True, slots=True)
class Change:
    """One audited change: who (admin key prefix, "cli", "config"), when, what before and after."""

    at: float
    actor: str
    kind: ObjectKind
    object_id: str
    action: Action
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    seq: int = 0  # given by the store


@runtime_checkable
class ObjectStore(Protocol):
    async def migrate(self) -> list[str]: ...

    async def create(self, obj: StoredObject, change: Change) -> None:
        """Insert `obj` and its change in one transaction; DuplicateObject when the id or unique key is taken."""

    async def update(self, obj: StoredObject, expected_version: int, change: Change) -> bool:
        """Replace the object if it is still at `expected_version` (False: gone or changed meanwhile);
        DuplicateObject when its new unique key is taken."""

    async def delete(
        self, kind: ObjectKind, object_id: str, change: Change, expected_version: int | None = None
    ) -> bool:
        """Remove it with its change; False when there was none (or, with `expected_version`, when it
        is no longer at that version: changed meanwhile)."""

    async def record(self, change: Change) -> None:
        """An audit row alone: a change to an object declared in a config file (not stored here)."""

    async def get(self, kind: ObjectKind, object_id: str) -> StoredObject | None: ...

    async def objects(self, kind: ObjectKind | None = None) -> list[StoredObject]:
        """Every object (of one kind), ordered by kind and id."""

    async def changes(
        self,
        *,
        kind: ObjectKind | None = None,
        object_id: str | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[Change]:
        """Newest first; `before_seq` pages back in time."""

    async def close(self) -> None: ...
