"""The BatchStore contract on SQLite and a real PostgreSQL: files and batches listed in pages, status
compare-and-set, lines cut into chunks, chunk leases that exclude each other and expire, each line's
result written once and counted once, batch-level leases for validation and finalisation."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from tests.support.postgres import PostgresServer, postgres_server

from margin.storage.batch_stores import open_batch_store
from margin.storage.batches import BatchRecord, BatchStore, FileRecord, LineOutcome, LineResult, LineSpec


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def _url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/margin.db"
    server: PostgresServer = request.getfixturevalue("pg_server")
    return server.create_database(f"b_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url(request, tmp_path)


@pytest.fixture
async def store(url: str, tmp_path: Path) -> AsyncIterator[BatchStore]:
    opened = open_batch_store(url, tmp_path)
    await opened.migrate()
    yield opened
    await opened.close()


def a_file(file_id: str, created_at: float, owner: str = "key_a", purpose: str = "batch") -> FileRecord:
    return FileRecord(file_id, owner, purpose, f"{file_id}.jsonl", 10, 2, created_at, file_id)


def a_batch(batch_id: str = "batch_1", created_at: float = 100.0, **changes: object) -> BatchRecord:
    base = BatchRecord(
        batch_id=batch_id, owner="key_a", api="openai", endpoint="/v1/chat/completions", input_file_id="file-1",
        completion_window="24h", status="validating", created_at=created_at, expires_at=created_at + 86_400,
        principal={"key_id": "key_a", "tags": ["x"]}, metadata={"run": "nightly"},
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def lines(count: int) -> list[LineSpec]:
    return [LineSpec(n, (n - 1) * 10, 9, f"c{n}") for n in range(1, count + 1)]


def result(line_no: int, outcome: LineOutcome = "completed", cost: str = "0.000123456789") -> LineResult:
    return LineResult(line_no, outcome, f'{{"custom_id":"c{line_no}"}}', f"req_{line_no}", 200.0, 10, 5, Decimal(cost))


async def running_batch(store: BatchStore, count: int, *, chunk_lines: int, batch_id: str = "batch_1") -> None:
    await store.add_batch(a_batch(batch_id))
    await store.add_lines(batch_id, lines(count))
    assert await store.open_batch(batch_id, chunk_lines=chunk_lines, now=101.0)


async def test_files_page_by_creation_time_per_owner_and_purpose(store: BatchStore) -> None:
    for n in range(5):
        await store.add_file(a_file(f"file-{n}", 100.0 + n))
    await store.add_file(a_file("file-other", 103.5, owner="key_b"))
    await store.add_file(a_file("file-out", 104.5, purpose="batch_output"))
    await store.add_file(a_file("file-0", 999.0))  # the same id again changes nothing
    first = await store.list_files("key_a", purpose="batch", after=None, limit=2, descending=True)
    assert [f.file_id for f in first.items] == ["file-4", "file-3"] and first.has_more
    rest = await store.list_files("key_a", purpose="batch", after="file-3", limit=10, descending=True)
    assert [f.file_id for f in rest.items] == ["file-2", "file-1", "file-0"] and not rest.has_more
    ascending = await store.list_files(None, purpose=None, after="file-3", limit=10, descending=False)
    assert [f.file_id for f in ascending.items] == ["file-other", "file-4", "file-out"]
    assert await store.get_file("file-0") == a_file("file-0", 100.0)
    assert await store.delete_file("file-0")
    assert not await store.delete_file("file-0")
    assert await store.get_file("file-0") is None


async def test_batches_round_trip_list_newest_first_and_change_by_status(store: BatchStore) -> None:
    for n in range(3):
        await store.add_batch(a_batch(f"batch_{n}", 100.0 + n))
    assert await store.get_batch("batch_0") == a_batch("batch_0", 100.0)
    page = await store.list_batches("key_a", after=None, limit=2)
    assert [b.batch_id for b in page.items] == ["batch_2", "batch_1"] and page.has_more
    page = await store.list_batches("key_a", after="batch_1", limit=2)
    assert [b.batch_id for b in page.items] == ["batch_0"] and not page.has_more
    assert (await store.list_batches("key_b", after=None, limit=5)).items == []
    errors = [{"code": "invalid_json_line", "line": 3, "message": "bad", "param": None}]
    changes = {"status": "failed", "failed_at": 105.0, "errors": errors}
    assert await store.update_batch("batch_0", ["validating"], changes)
    assert not await store.update_batch("batch_0", ["validating"], {"status": "in_progress"})
    stored = await store.get_batch("batch_0")
    assert stored is not None and stored.status == "failed" and stored.errors == errors and stored.failed_at == 105.0


async def test_lines_are_chunked_once_and_results_are_written_and_counted_once(store: BatchStore) -> None:
    await store.add_batch(a_batch())
    await store.add_lines("batch_1", lines(5))
    await store.add_lines("batch_1", lines(5))  # validation run again after a crash: nothing twice
    assert await store.open_batch("batch_1", chunk_lines=2, now=101.0)
    assert not await store.open_batch("batch_1", chunk_lines=2, now=102.0)
    batch = await store.get_batch("batch_1")
    assert batch is not None and batch.status == "in_progress" and batch.total == 5 and batch.in_progress_at == 101.0
    assert await store.unfinished_chunks("batch_1") == 3
    assert [s.line_no for s in await store.pending_lines("batch_1", 1)] == [3, 4]
    assert await store.finish_line("batch_1", result(3))
    assert not await store.finish_line("batch_1", result(3, "failed"))  # the second writer loses
    assert await store.finish_line("batch_1", result(4, "failed", cost="0.000000000001"))
    assert await store.pending_lines("batch_1", 1) == []
    batch = await store.get_batch("batch_1")
    assert batch is not None
    assert (batch.completed, batch.failed, batch.input_tokens, batch.output_tokens) == (1, 1, 20, 10)
    assert batch.cost == Decimal("0.00012345679")
    rows = await store.line_rows("batch_1", after_line=2, limit=2)
    assert [(r.spec.line_no, r.outcome) for r in rows] == [(3, "completed"), (4, "failed")]
    assert rows[0].result == '{"custom_id":"c3"}' and rows[0].spec.custom_id == "c3"
    assert [r.outcome for r in await store.line_results("batch_1", [5, 3])] == ["completed", None]


async def test_a_final_batch_takes_no_more_results(store: BatchStore) -> None:
    await running_batch(store, 2, chunk_lines=10)
    assert await store.update_batch("batch_1", ["in_progress"], {"status": "cancelled", "cancelled_at": 110.0})
    assert not await store.finish_line("batch_1", result(1))
    batch = await store.get_batch("batch_1")
    assert batch is not None and batch.completed == 0


async def test_chunk_leases_exclude_each_other_expire_and_are_taken_again(store: BatchStore) -> None:
    await running_batch(store, 4, chunk_lines=2)
    first = await store.claim_chunk("w1", now=200.0, lease_s=10)
    second = await store.claim_chunk("w2", now=200.0, lease_s=10)
    assert first is not None and second is not None and first.chunk_no != second.chunk_no
    assert await store.claim_chunk("w3", now=205.0, lease_s=10) is None
    assert await store.live_leases("batch_1", 205.0) == 2
    assert await store.renew_chunk(first, 220.0)
    taken = await store.claim_chunk("w3", now=211.0, lease_s=10)  # w2's lease expired at 210
    assert taken is not None and taken.chunk_no == second.chunk_no and taken.owner == "w3"
    assert not await store.renew_chunk(second, 230.0)  # w2 lost it
    await store.release_chunk(second, done=True)  # a lost lease releases nothing
    assert await store.unfinished_chunks("batch_1") == 2
    await store.release_chunk(taken, done=True)
    assert await store.unfinished_chunks("batch_1") == 1
    await store.release_chunk(first, done=False)
    again = await store.claim_chunk("w4", now=212.0, lease_s=10)
    assert again is not None and again.chunk_no == first.chunk_no


async def test_no_chunk_of_a_paused_expired_or_ending_batch_is_leased(store: BatchStore) -> None:
    await running_batch(store, 2, chunk_lines=1)
    assert await store.update_batch("batch_1", ["in_progress"], {"paused": "budget", "paused_until": 300.0})
    assert await store.claim_chunk("w1", now=200.0, lease_s=5) is None
    assert await store.claim_chunk("w1", now=300.0, lease_s=5) is not None
    assert await store.claim_chunk("w1", now=100.0 + 86_400, lease_s=5) is None  # past expires_at
    assert await store.update_batch("batch_1", ["in_progress"], {"ending": "cancelled"})
    assert await store.claim_chunk("w1", now=400.0, lease_s=5) is None


async def test_a_native_batch_keeps_its_provider_batch_and_is_looked_at_under_the_batch_lease(
    store: BatchStore,
) -> None:
    await store.add_batch(a_batch("batch_n", 50.0))
    await store.add_lines("batch_n", lines(3))
    changes = {"status": "in_progress", "in_progress_at": 60.0, "total": 3, "native_deployment": "openai-mini"}
    assert await store.update_batch("batch_n", ["validating"], changes)
    assert await store.claim_chunk("w1", now=70.0, lease_s=10) is None  # no chunks: the provider runs its lines
    looked = await store.claim_batch("w1", now=70.0, lease_s=10)
    assert looked is not None and looked.native_deployment == "openai-mini" and looked.native_id is None
    assert await store.update_batch("batch_n", ["in_progress", "cancelling"], {"native_id": "batch_abc"})
    assert await store.renew_batch("batch_n", "w1", 100.0)  # look again later
    assert await store.claim_batch("w2", now=90.0, lease_s=10) is None
    again = await store.claim_batch("w2", now=101.0, lease_s=10)
    assert again is not None and again.native_id == "batch_abc" and again.total == 3


async def test_batch_level_work_is_leased_to_one_worker(store: BatchStore) -> None:
    await store.add_batch(a_batch("batch_v", 50.0))
    await running_batch(store, 2, chunk_lines=1)
    validating = await store.claim_batch("w1", now=200.0, lease_s=10)
    assert validating is not None and validating.batch_id == "batch_v"
    assert await store.claim_batch("w2", now=200.0, lease_s=10) is None  # batch_1 still has chunks to run
    for line in (1, 2):
        assert await store.finish_line("batch_1", result(line))
    for _ in (1, 2):
        lease = await store.claim_chunk("w1", now=200.0, lease_s=10)
        assert lease is not None
        await store.release_chunk(lease, done=True)
    done = await store.claim_batch("w2", now=201.0, lease_s=10)
    assert done is not None and done.batch_id == "batch_1"
    assert await store.renew_batch("batch_1", "w2", 230.0)
    assert not await store.renew_batch("batch_1", "w1", 230.0)
    assert await store.claim_batch("w3", now=205.0, lease_s=10) is None  # both leased
    await store.release_batch("batch_1", "w2")
    assert sorted(await store.lease_owners(205.0)) == ["w1"]
    assert await store.release_owners(["w1"]) == 1
    assert await store.lease_owners(205.0) == []
    again = await store.claim_batch("w3", now=205.0, lease_s=10)
    assert again is not None and again.batch_id == "batch_v"


async def test_concurrent_claims_from_separate_connections_take_distinct_chunks(
    store: BatchStore, url: str, tmp_path: Path
) -> None:
    await running_batch(store, 40, chunk_lines=2)
    others = [open_batch_store(url, tmp_path) for _ in range(4)]

    async def claim_all(worker: BatchStore, name: str) -> list[int]:
        taken = []
        while (lease := await worker.claim_chunk(name, now=200.0, lease_s=30)) is not None:
            taken.append(lease.chunk_no)
        return taken

    try:
        claimed = await asyncio.gather(*(claim_all(w, f"w{n}") for n, w in enumerate(others)))
    finally:
        for worker in others:
            await worker.close()
    every = [chunk for taken in claimed for chunk in taken]
    assert sorted(every) == list(range(20))
