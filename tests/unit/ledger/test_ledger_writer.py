"""LedgerWriter: batching, spill on failure or timeout, idempotent replay, overflow, drain on stop."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from ledger_rows import FlakyStore, eventually
from tests.support.ledger_rows import make_row

from margin.ledger.spill import SpillFile
from margin.ledger.writer import LedgerWriter
from margin.storage import LedgerStore, open_ledger_store


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[LedgerStore]:
    store = open_ledger_store("sqlite:///{data_dir}/ledger.db", tmp_path)
    await store.migrate()
    yield store
    await store.close()


@pytest.fixture
def flaky(sqlite_store: LedgerStore) -> FlakyStore:
    return FlakyStore(sqlite_store)


def writer_for(store: LedgerStore, tmp_path: Path, **options: float) -> LedgerWriter:
    settings = {"batch_size": 50, "flush_interval_s": 0.01, "write_timeout_s": 1.0, "probe_interval_s": 0.05}
    settings.update(options)
    return LedgerWriter(store, SpillFile(tmp_path / "spill" / "ledger.jsonl"), **settings)  # type: ignore[arg-type]


async def rollup_attempts(store: LedgerStore) -> int:
    now = time.time()
    return sum(r.attempts for r in await store.spend_report(now - 86400, now + 86400, "key"))


async def test_rows_are_written_in_batches(flaky: FlakyStore, tmp_path: Path) -> None:
    writer = writer_for(flaky, tmp_path)
    await writer.start()
    for start in range(0, 1200, 40):
        writer.submit([make_row(n) for n in range(start, start + 40)])
    await writer.stop()
    assert await flaky.count() == 1200
    assert (writer.written_rows, writer.spilled_rows, writer.queue_depth) == (1200, 0, 0)
    assert flaky.write_calls <= 1200 // 40  # batched, never one row at a time


async def test_store_down_spills_then_replays_every_row_once(flaky: FlakyStore, tmp_path: Path) -> None:
    writer = writer_for(flaky, tmp_path)
    await writer.start()
    flaky.down = True
    writer.submit([make_row(n) for n in range(300)])
    await eventually(lambda: writer.spilled_rows == 300)
    assert not writer.store_available and writer.spill.pending_rows() == 300
    writer.submit([make_row(n) for n in range(300, 350)])  # still spilled while the store is down
    await eventually(lambda: writer.spilled_rows == 350)
    flaky.down = False
    await eventually(lambda: writer.replayed_rows == 350)
    writer.submit([make_row(n) for n in range(350, 400)])
    await writer.stop()
    assert await flaky.count() == 400
    assert await rollup_attempts(flaky) == 400
    assert writer.store_available and writer.spill.pending_rows() == 0
    assert not writer.spill.path.exists() and not writer.spill.replay_path.exists()


async def test_a_write_that_times_out_is_spilled(flaky: FlakyStore, tmp_path: Path) -> None:
    writer = writer_for(flaky, tmp_path, write_timeout_s=0.1)
    await writer.start()
    flaky.hang = True
    writer.submit([make_row(n) for n in range(20)])
    await eventually(lambda: writer.spilled_rows == 20)
    flaky.hang = False
    await writer.stop()
    assert await flaky.count() == 20 and writer.replayed_rows == 20


async def test_a_lost_acknowledgement_never_doubles_a_row(flaky: FlakyStore, tmp_path: Path) -> None:
    writer = writer_for(flaky, tmp_path)
    await writer.start()
    flaky.lose_acks = 1  # the batch is committed, then the write raises: it is also spilled
    writer.submit([make_row(n) for n in range(30)])
    await eventually(lambda: writer.replayed_rows == 30)
    await writer.stop()
    assert await flaky.count() == 30
    assert await rollup_attempts(flaky) == 30  # the replay added nothing to the rollups


async def test_a_full_buffer_spills_instead_of_blocking(flaky: FlakyStore, tmp_path: Path) -> None:
    writer = writer_for(flaky, tmp_path, max_queue=10)  # not started: nothing drains the buffer
    started = time.perf_counter()
    writer.submit([make_row(n) for n in range(50)])
    assert time.perf_counter() - started < 0.05
    assert writer.queue_depth == 10
    await eventually(lambda: writer.spilled_rows == 40)
    await writer.start()
    await writer.stop()
    assert await flaky.count() == 50


async def test_rows_spilled_by_an_earlier_run_are_replayed_on_start(flaky: FlakyStore, tmp_path: Path) -> None:
    crashed = writer_for(flaky, tmp_path)
    crashed.spill.append([make_row(n) for n in range(25)])
    with crashed.spill.path.open("a") as torn:
        torn.write('{"attempt_id": "req-99:0", "request')  # the crash cut this append short
    writer = writer_for(flaky, tmp_path)
    await writer.start()
    await eventually(lambda: writer.replayed_rows == 25)
    await writer.stop()
    assert await flaky.count() == 25


async def test_stop_with_the_store_down_keeps_rows_on_disk(flaky: FlakyStore, tmp_path: Path) -> None:
    writer = writer_for(flaky, tmp_path)
    await writer.start()
    flaky.down = True
    writer.submit([make_row(n) for n in range(60)])
    await writer.stop()
    assert await flaky.count() == 0
    assert SpillFile(writer.spill.path).pending_rows() == 60  # what the next start will replay
