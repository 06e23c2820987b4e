"""The journal's group commit: the lines of one event-loop iteration, every request's, go in one
write(); an `att` line is written at once with whatever is pending, before the attempt can go
upstream; a process killed (a real SIGKILL) right after an iteration ended, or right after an
attempt was journaled, left every line for its successor."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.ledger_rows import make_row

from margin.ledger.journal import Journal
from margin.ledger.journal_replay import read_journal


def _request(journal: Journal, request_id: str) -> None:
    journal.begin(request_id, {"row": {"request_id": request_id}, "res": None, "intent": False}, reserved=False)


def _written(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.glob("*.jsonl")))


async def test_one_iterations_lines_go_in_one_write(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    for n in range(8):
        _request(journal, f"r{n}")
        journal.rows([make_row(n)])
        journal.ended(f"r{n}")
    assert journal.writes == 0 and _written(tmp_path) == b""  # pending until the iteration ends
    await asyncio.sleep(0)
    assert journal.writes == 1 and journal.lines_written == 24
    contents = read_journal(sorted(tmp_path.glob("*.jsonl")))
    assert sorted(contents.rows) == sorted(make_row(n).attempt_id for n in range(8))
    assert all(trace.ended for trace in contents.traces.values()) and len(contents.traces) == 8
    journal.close()


async def test_an_attempt_is_written_at_once_with_what_is_pending(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    _request(journal, "other")
    journal.rows([make_row(0)])
    _request(journal, "r1")
    journal.attempt("r1", {"i": 0, "d": "dep", "m": "model", "r": None, "t": 1.0})
    assert journal.writes == 1  # no await since: on disk before the attempt goes upstream
    contents = read_journal(sorted(tmp_path.glob("*.jsonl")))
    assert contents.traces["r1"].attempts[0]["d"] == "dep" and "other" in contents.traces
    assert list(contents.rows) == [make_row(0).attempt_id]
    await asyncio.sleep(0)
    assert journal.writes == 1  # the scheduled flush found nothing left
    journal.ended("r1")
    journal.flush()
    assert journal.writes == 2 and read_journal(sorted(tmp_path.glob("*.jsonl"))).traces["r1"].ended
    journal.close()


async def test_close_writes_what_is_pending(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.rows([make_row(0)])  # never acknowledged: the next start needs it
    await asyncio.to_thread(journal.close)  # as Recovery.stop does, before the flush callback ran
    successor = Journal(tmp_path)
    successor.open()
    (adopted,) = successor.adopt()
    assert list(read_journal(adopted.segments).rows) == [make_row(0).attempt_id]
    successor.close()


def test_a_process_killed_after_its_loop_moved_on_left_every_line(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from pathlib import Path
        from tests.support.ledger_rows import make_row
        from margin.ledger.journal import Journal

        async def main() -> None:
            journal = Journal(Path({str(tmp_path)!r}), fsync_interval_s=3600)  # nothing is fsynced
            journal.open()
            for n in range(20):
                journal.begin(f"r{{n}}", {{"row": {{"request_id": f"r{{n}}"}}, "res": None, "intent": False}},
                              reserved=False)
                journal.rows([make_row(n)])
                journal.ended(f"r{{n}}")
                if n % 5 == 4:
                    await asyncio.sleep(0)  # the loop moves on: those lines are written
            journal.begin("flying", {{"row": {{"request_id": "flying"}}, "res": None, "intent": False}},
                          reserved=False)
            journal.attempt("flying", {{"i": 0, "d": "dep", "m": "model", "r": None, "t": 1.0}})
            os.kill(os.getpid(), signal.SIGKILL)  # the attempt's next step would send it upstream

        asyncio.run(main())
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[3], check=False)
    assert killed.returncode == -9
    successor = Journal(tmp_path)
    successor.open()
    (adopted,) = successor.adopt()
    contents = read_journal(adopted.segments)
    assert sorted(contents.rows) == sorted(make_row(n).attempt_id for n in range(20))
    assert contents.traces["flying"].attempts[0]["d"] == "dep" and not contents.traces["flying"].ended
    successor.close()
