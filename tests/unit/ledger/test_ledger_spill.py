"""SpillFile: exact JSON round trip, fsynced appends, claim/release snapshots, torn last lines."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from tests.support.ledger_rows import make_row

from margin.ledger.spill import SpillFile, row_from_json, row_to_json


def test_a_row_survives_json_exactly() -> None:
    row = make_row(1, tags=("a", "b"), tier=None, extra={"k": "v"}, cost_output=Decimal("1.5E-7"), ttft_ms=None)
    assert row_from_json(row_to_json(row)) == row
    assert row_from_json(row_to_json(row)).cost_output == Decimal("0.00000015")


def test_a_row_is_the_standard_librarys_compact_json_of_its_fields() -> None:
    """orjson writes the dataclass; the line is what json.dumps of its fields writes, Decimals as
    exact strings, non-ASCII as is, and a NaN or infinite float keeps the standard library's
    spelling (orjson alone would write null)."""
    rows = [
        make_row(1, tags=("é", "b"), extra={"z": "ü"}, cost_output=Decimal("1.5E-7"), ttft_ms=None),
        make_row(2, latency_ms=float("nan")),
        make_row(3, tokens_per_s=float("inf")),
        make_row(4, input_uncached=2**70),  # orjson refuses integers over 64 bits
    ]
    for row in rows:
        fields = {name: getattr(row, name) for name in row.__dataclass_fields__}
        expected = {k: str(v) if isinstance(v, Decimal) else list(v) if isinstance(v, tuple) else v
                    for k, v in fields.items()}  # fmt: skip
        assert row_to_json(row) == json.dumps(expected, ensure_ascii=False, separators=(",", ":"))
    assert '"latency_ms":NaN' in row_to_json(rows[1]) and '"tokens_per_s":Infinity' in row_to_json(rows[2])


def test_claim_snapshots_the_file_while_new_rows_go_to_a_fresh_one(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "ledger.jsonl")
    assert spill.claim() is None
    spill.append([make_row(n) for n in range(3)])
    claimed = spill.claim()
    assert claimed == spill.replay_path
    spill.append([make_row(3)])  # arrives during the replay
    assert spill.pending_rows() == 4
    assert spill.claim() == claimed  # an unfinished snapshot is finished first
    rows, offset = spill.read(claimed, 0, 2)
    more, end = spill.read(claimed, offset, 10)
    assert [r.attempt_id for r in rows + more] == ["req-0:0", "req-1:0", "req-2:0"]
    assert spill.read(claimed, end, 10) == ([], end)
    spill.release(claimed)
    assert spill.pending_rows() == 1
    assert [r.attempt_id for r in spill.read(spill.claim() or claimed, 0, 10)[0]] == ["req-3:0"]


def test_a_torn_last_line_is_cut_and_later_appends_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    SpillFile(path).append([make_row(1)])
    with path.open("a") as stream:
        stream.write('{"attempt_id": "req-2:0"')  # a crash mid-append
    reopened = SpillFile(path)
    assert reopened.pending_rows() == 1
    reopened.append([make_row(3)])
    claimed = reopened.claim()
    assert claimed is not None
    assert [r.attempt_id for r in reopened.read(claimed, 0, 10)[0]] == ["req-1:0", "req-3:0"]


def test_an_unreadable_line_is_counted_and_skipped(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "ledger.jsonl")
    spill.append([make_row(1)])
    with spill.path.open("a") as stream:
        stream.write("not json\n")
    spill.append([make_row(2)])
    claimed = spill.claim()
    assert claimed is not None
    assert [r.attempt_id for r in spill.read(claimed, 0, 10)[0]] == ["req-1:0", "req-2:0"]
    assert spill.corrupt_lines == 1


def test_two_processes_sharing_the_file_replay_every_row_once(tmp_path: Path) -> None:
    """Two SpillFiles on one path stand for two worker processes of one data dir: their flocks are
    on separate open files, so they exclude each other as two processes' do."""
    a, b = SpillFile(tmp_path / "ledger.jsonl"), SpillFile(tmp_path / "ledger.jsonl")
    a.append([make_row(n) for n in range(3)])
    b.append([make_row(n) for n in range(3, 5)])
    claimed = a.claim()
    assert claimed is not None
    assert b.claim() is None and b.pending_rows() == 0  # a replays b's rows too
    b.append([make_row(5)])  # while a replays: into a fresh live file, not into a's snapshot
    rows, _ = a.read(claimed, 0, 100)
    assert sorted(r.attempt_id for r in rows) == [f"req-{n}:0" for n in range(5)]
    a.release(claimed)
    second = b.claim()  # a is done: b replays what came after
    assert second is not None and [r.attempt_id for r in b.read(second, 0, 100)[0]] == ["req-5:0"]
    assert a.claim() is None  # b holds the replay now
    b.release(second)
    assert a.claim() is None and b.claim() is None and a.pending_rows() == b.pending_rows() == 0
