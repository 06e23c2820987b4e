"""The replica journal: what a killed process wrote is readable by its successor (a real SIGKILL), a
torn last line or an unreadable one is skipped, a live journal is never adopted, segments rotate
with the open requests carried forward and go once their rows are stored."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.support.ledger_rows import make_row

from margin.ledger.journal import Journal
from margin.ledger.journal_replay import read_journal


def _die(journal: Journal) -> None:
    """What SIGKILL leaves: the files as written, the lock released by the kernel, no clean-up."""
    journal._stopping.set()
    journal._wakeup.set()
    os.close(journal._lock_fd)


def _successor(directory: Path) -> tuple[Journal, list[Path]]:
    successor = Journal(directory)
    successor.open()
    adopted = successor.adopt()
    assert len(adopted) == 1
    return successor, list(adopted[0].segments)


def test_what_a_killed_process_wrote_is_there_for_its_successor(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from tests.support.ledger_rows import make_row
        from margin.ledger.journal import Journal

        journal = Journal(Path({str(tmp_path)!r}), fsync_interval_s=3600)  # nothing is fsynced
        journal.open()
        journal.begin("r1", {{"row": {{"request_id": "r1"}}, "res": None, "intent": False}}, reserved=False)
        journal.attempt("r1", {{"i": 0, "d": "dep", "m": "model", "r": None, "t": 1.0}})
        journal.rows([make_row(n) for n in range(3)])
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[3], check=False)
    assert killed.returncode == -9
    successor, segments = _successor(tmp_path)
    contents = read_journal(segments)
    assert sorted(contents.rows) == sorted(make_row(n).attempt_id for n in range(3))
    assert contents.traces["r1"].attempts[0]["d"] == "dep" and not contents.traces["r1"].ended
    successor.close()


def test_a_torn_last_line_and_an_unreadable_line_are_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.rows([make_row(0)])
    journal.rows([make_row(1)])
    _die(journal)
    segment = next(tmp_path.glob("*.jsonl"))
    with segment.open("ab") as stream:
        stream.write(b"not json at all\n")
        stream.write(b'{"k":"rows","rows":[{"attempt_id":"torn')  # the write the kill cut short
    journal_rows = read_journal([segment]).rows
    assert sorted(journal_rows) == sorted([make_row(0).attempt_id, make_row(1).attempt_id])


def test_a_live_journal_is_never_adopted(tmp_path: Path) -> None:
    first, second = Journal(tmp_path), Journal(tmp_path)
    first.open()
    first.rows([make_row(0)])
    second.open()
    assert second.adopt() == []  # its process holds the lock
    _die(first)
    assert [a.owner for a in second.adopt()] == [first.owner]
    second.close()


def test_segments_rotate_carrying_open_requests_and_go_once_stored(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_bytes=4096, fsync_interval_s=0.01)
    journal.open()
    journal.begin("open-one", {"row": {"request_id": "open-one"}, "res": None, "intent": True}, reserved=True)
    journal.begin("done", {"row": {"request_id": "done"}, "res": None, "intent": False}, reserved=False)
    journal.ended("done")
    stored: dict[int, int] = {}
    for n in range(40):  # about 1.5 kB a row: many segments
        seq = journal.rows([make_row(n)])
        stored[seq] = stored.get(seq, 0) + 1
    assert len(list(tmp_path.glob("*.jsonl"))) > 3
    journal.stored(stored)
    deadline = time.monotonic() + 5
    while len(list(tmp_path.glob("*.jsonl"))) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    remaining = list(tmp_path.glob("*.jsonl"))
    assert len(remaining) == 1 and journal.fsyncs > 0
    contents = read_journal(remaining)
    assert set(contents.traces) == {"open-one"}  # carried forward; the finished request was not
    _die(journal)


def test_close_removes_a_journal_that_holds_nothing_needed(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.begin("r", {"row": {"request_id": "r"}, "res": None, "intent": False}, reserved=False)
    seq = journal.rows([make_row(0)])
    journal.ended("r")
    journal.stored({seq: 1})
    journal.close()
    assert list(tmp_path.iterdir()) == []


def test_close_keeps_what_is_still_needed_for_the_next_start(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.rows([make_row(0)])  # never acknowledged by a store
    journal.close()
    successor, segments = _successor(tmp_path)
    assert list(read_journal(segments).rows) == [make_row(0).attempt_id]
    successor.close()
