"""SQL shared by the SQLite and PostgreSQL object stores (same schema, migration 0010_teams)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson

from margin.storage.teams import Action, Change, ObjectKind, StoredObject

_OBJECT_COLUMNS = "kind, object_id, unique_key, body, created_at, updated_at, version"
_CHANGE_COLUMNS = "seq, at, actor, kind, object_id, action, before, after"


@dataclass(frozen=True, slots=True)
class ObjectSql:
    param: str  # "?" (SQLite) or "%s" (psycopg)

    def _params(self, count: int) -> str:
        return ", ".join([self.param] * count)

    @property
    def insert_object(self) -> str:
        return f"INSERT INTO margin_objects ({_OBJECT_COLUMNS}) VALUES ({self._params(7)})"

    @property
    def update_object(self) -> str:
        p = self.param
        return (
            f"UPDATE margin_objects SET unique_key = {p}, body = {p}, updated_at = {p}, version = {p} "
            f"WHERE kind = {p} AND object_id = {p} AND version = {p}"
        )

    @property
    def delete_object(self) -> str:
        return f"DELETE FROM margin_objects WHERE kind = {self.param} AND object_id = {self.param}"

    @property
    def delete_object_at_version(self) -> str:
        return f"{self.delete_object} AND version = {self.param}"

    def deletion(self, kind: ObjectKind, object_id: str, expected_version: int | None) -> tuple[str, tuple[Any, ...]]:
        """The DELETE and its parameters, conditional on the version when one is expected."""
        if expected_version is None:
            return self.delete_object, (kind, object_id)
        return self.delete_object_at_version, (kind, object_id, expected_version)

    @property
    def select_one(self) -> str:
        return f"SELECT {_OBJECT_COLUMNS} FROM margin_objects WHERE kind = {self.param} AND object_id = {self.param}"

    def select_all(self, by_kind: bool) -> str:
        where = f" WHERE kind = {self.param}" if by_kind else ""
        return f"SELECT {_OBJECT_COLUMNS} FROM margin_objects{where} ORDER BY kind, object_id"

    @property
    def insert_change(self) -> str:
        columns = _CHANGE_COLUMNS.removeprefix("seq, ")
        return f"INSERT INTO margin_object_changes ({columns}) VALUES ({self._params(7)})"

    def select_changes(self, kind: bool, object_id: bool, before: bool) -> tuple[str, int]:
        """The query and where its limit parameter goes (after the filters given)."""
        p = self.param
        where = [c for c, on in ((f"kind = {p}", kind), (f"object_id = {p}", object_id), (f"seq < {p}", before)) if on]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_CHANGE_COLUMNS} FROM margin_object_changes{clause} ORDER BY seq DESC LIMIT {p}"
        return sql, len(where)


def _json(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def object_values(obj: StoredObject) -> tuple[Any, ...]:
    return (obj.kind, obj.object_id, obj.unique_key, _json(dict(obj.body)), obj.created_at, obj.updated_at,
            obj.version)  # fmt: skip


def update_values(obj: StoredObject, expected_version: int) -> tuple[Any, ...]:
    return (obj.unique_key, _json(dict(obj.body)), obj.updated_at, obj.version, obj.kind, obj.object_id,
            expected_version)  # fmt: skip


def object_from(row: Sequence[Any]) -> StoredObject:
    return StoredObject(
        kind=cast(ObjectKind, str(row[0])), object_id=str(row[1]), unique_key=str(row[2]),
        body=orjson.loads(row[3]), created_at=float(row[4]), updated_at=float(row[5]), version=int(row[6]),
    )  # fmt: skip


def change_values(change: Change) -> tuple[Any, ...]:
    before = None if change.before is None else dict(change.before)
    after = None if change.after is None else dict(change.after)
    return (change.at, change.actor, change.kind, change.object_id, change.action, _json(before), _json(after))


def change_from(row: Sequence[Any]) -> Change:
    return Change(
        seq=int(row[0]), at=float(row[1]), actor=str(row[2]), kind=cast(ObjectKind, str(row[3])),
        object_id=str(row[4]), action=cast(Action, str(row[5])),
        before=None if row[6] is None else orjson.loads(row[6]),
        after=None if row[7] is None else orjson.loads(row[7]),
    )  # fmt: skip


def change_params(
    kind: ObjectKind | None, object_id: str | None, before_seq: int | None, limit: int
) -> tuple[Any, ...]:
    return (*(v for v in (kind, object_id, before_seq) if v is not None), limit)


class ObjectQueries:
    """The object store's one-statement reads and writes, the same on SQLite and PostgreSQL. A backend
    gives `sql` (its dialect), `_rows` and `_write` (one statement, its rows or its rowcount), and keeps
    what shares a transaction with an audit row (create, update, delete) and how it tells a duplicate."""

    sql: ObjectSql

    if TYPE_CHECKING:

        async def _rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...
        async def _write(self, sql: str, params: Sequence[Any]) -> int: ...

    async def record(self, change: Change) -> None:
        await self._write(self.sql.insert_change, change_values(change))

    async def get(self, kind: ObjectKind, object_id: str) -> StoredObject | None:
        rows = await self._rows(self.sql.select_one, (kind, object_id))
        return object_from(rows[0]) if rows else None

    async def objects(self, kind: ObjectKind | None = None) -> list[StoredObject]:
        params: tuple[Any, ...] = () if kind is None else (kind,)
        return [object_from(r) for r in await self._rows(self.sql.select_all(kind is not None), params)]

    async def changes(
        self,
        *,
        kind: ObjectKind | None = None,
        object_id: str | None = None,
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[Change]:
        sql, _ = self.sql.select_changes(kind is not None, object_id is not None, before_seq is not None)
        rows = await self._rows(sql, change_params(kind, object_id, before_seq, limit))
        return [change_from(r) for r in rows]
