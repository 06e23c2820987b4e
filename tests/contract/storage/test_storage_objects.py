"""The ObjectStore contract (teams, budgets, rate limits, their audit trail) on SQLite and a real
PostgreSQL: unique ids and unique keys, compare-and-set updates, each change audited in the same
transaction, changes paged newest first."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from tests.support.postgres import PostgresServer, postgres_server

from margin.storage.team_stores import open_object_store
from margin.storage.teams import Change, DuplicateObject, ObjectStore, StoredObject


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/margin.db"
    else:
        server: PostgresServer = request.getfixturevalue("pg_server")
        url = server.create_database(f"o_{uuid.uuid4().hex[:12]}")
    opened = open_object_store(url, tmp_path)
    await opened.migrate()
    yield opened
    await opened.close()


def team(name: str, at: float = 100.0, **body: object) -> StoredObject:
    return StoredObject("team", name, name, {"name": name, **body}, at, at)


def change(
    obj: StoredObject, action: str = "create", before: object = None, actor: str = "admin:sk-margin-Ab"
) -> Change:
    after = None if action == "delete" else dict(obj.body)
    return Change(obj.updated_at, actor, obj.kind, obj.object_id, action, before, after)  # type: ignore[arg-type]


async def test_create_get_list_and_duplicates(store: ObjectStore) -> None:
    search = team("search", users=["ana"])
    await store.create(search, change(search))
    await store.create(team("data"), change(team("data")))
    assert await store.get("team", "search") == search
    assert await store.get("team", "nope") is None
    assert [o.object_id for o in await store.objects("team")] == ["data", "search"]
    with pytest.raises(DuplicateObject):
        await store.create(team("search"), change(team("search")))
    budget = StoredObject("budget", "bud_1", "team:search|usd|month", {"scope": "team:search"}, 1.0, 1.0)
    await store.create(budget, change(budget))
    clash = StoredObject("budget", "bud_2", "team:search|usd|month", {"scope": "team:search"}, 2.0, 2.0)
    with pytest.raises(DuplicateObject):
        await store.create(clash, change(clash))
    assert [o.kind for o in await store.objects()] == ["budget", "team", "team"]
    assert len(await store.changes()) == 3  # the refused ones left no audit row


async def test_update_is_compare_and_set_and_audited(store: ObjectStore) -> None:
    first = team("search")
    await store.create(first, change(first))
    second = StoredObject("team", "search", "search", {"name": "search", "users": ["bo"]}, 100.0, 150.0, version=2)
    assert await store.update(second, 1, change(second, "update", before=dict(first.body)))
    stale = StoredObject("team", "search", "search", {"name": "search"}, 100.0, 160.0, version=2)
    assert not await store.update(stale, 1, change(stale, "update"))  # someone else changed it
    assert (await store.get("team", "search")) == second
    history = await store.changes(kind="team", object_id="search")
    assert [c.action for c in history] == ["update", "create"]
    assert history[0].before == {"name": "search"} and history[0].after == {"name": "search", "users": ["bo"]}
    assert history[0].actor == "admin:sk-margin-Ab" and history[0].seq > history[1].seq


async def test_delete_and_paging_back_through_changes(store: ObjectStore) -> None:
    for index in range(5):
        obj = team(f"t{index}", at=float(index))
        await store.create(obj, change(obj))
    gone = team("t1")
    assert await store.delete("team", "t1", change(gone, "delete", before=dict(gone.body), actor="cli"))
    assert not await store.delete("team", "t1", change(gone, "delete"))
    newest = await store.changes(limit=2)
    assert [(c.action, c.object_id, c.actor) for c in newest] == [
        ("delete", "t1", "cli"),
        ("create", "t4", newest[1].actor),
    ]
    older = await store.changes(limit=10, before_seq=newest[-1].seq)
    assert [c.object_id for c in older] == ["t3", "t2", "t1", "t0"]
    assert [c.object_id for c in await store.changes(object_id="t1")] == ["t1", "t1"]
    assert await store.changes(kind="budget") == []


async def test_a_delete_at_a_version_leaves_an_object_changed_meanwhile(store: ObjectStore) -> None:
    first = team("search")
    await store.create(first, change(first))
    second = StoredObject("team", "search", "search", {"name": "search", "users": ["bo"]}, 100.0, 150.0, version=2)
    assert await store.update(second, 1, change(second, "update"))
    assert not await store.delete("team", "search", change(first, "delete"), expected_version=1)
    assert await store.get("team", "search") == second  # kept, and no audit row for the refused delete
    assert [c.action for c in await store.changes(object_id="search")] == ["update", "create"]
    assert await store.delete("team", "search", change(second, "delete"), expected_version=2)
    assert await store.get("team", "search") is None
    assert [c.action for c in await store.changes(object_id="search")] == ["delete", "update", "create"]


async def test_an_audit_row_alone_for_a_config_change(store: ObjectStore) -> None:
    declared = {"scope": "team:ops", "limit_usd": "5"}
    await store.record(Change(7.0, "config", "budget", "bud_cfg_1", "create", None, declared))
    assert await store.objects() == []  # config objects are never stored, only their audit rows
    (row,) = await store.changes(kind="budget", object_id="bud_cfg_1")
    assert (row.actor, row.action, row.before, row.after, row.at) == ("config", "create", None, declared, 7.0)
