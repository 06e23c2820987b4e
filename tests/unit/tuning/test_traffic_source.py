"""Candidates from the production sample: only samples within --since, only the opted-in teams'
requests (looked up in a real SQLite ledger by request id), the teacher's own answers kept, the
others left for the teacher to answer."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.ledger_rows import make_row

from margin.storage import open_ledger_store
from margin.storage.rollouts import SampleRecord
from margin.tuning.sources import TeacherRoute, parse_since, traffic_candidates


def _sample(i: int, deployment: str, at: float) -> SampleRecord:
    return SampleRecord(f"s{i}", "support", at, f"req_{i}", deployment, [{"role": "user", "content": f"q{i}"}],
                        f"answer {i}", {})  # fmt: skip


async def test_since_teams_and_the_teachers_answers(tmp_path: Path) -> None:
    ledger = open_ledger_store("sqlite:///{data_dir}/margin.db", tmp_path)
    await ledger.migrate()
    await ledger.write(
        [make_row(i, request_id=f"req_{i}", attempt_id=f"req_{i}:0", team="support-eu" if i % 2 else "sales")
         for i in range(6)]
    )  # fmt: skip
    now = time.time()
    samples = [_sample(i, "premium" if i < 3 else "cheap", now - 60) for i in range(6)]
    samples.append(_sample(9, "cheap", now - 30 * 86400))

    async def team_of(request_id: str) -> str | None:
        rows = await ledger.request_rows(request_id)
        return rows[0].team if rows else None

    teacher = TeacherRoute("premium", "support", {"metadata": {"margin_tier": "premium"}}, frozenset({"premium"}))
    out, skipped = await traffic_candidates(
        samples, since=now - parse_since("7d"), teacher=teacher, teams=["support-eu"], team_of=team_of
    )
    await ledger.close()
    assert [(c.origin, c.answer) for c in out] == [("s1", "answer 1"), ("s3", None), ("s5", None)]
    assert skipped == {"other_team": 3, "older": 1}
