"""Streamed answers and the online judge end to end (issue 17, section 3): `margin serve` in front of
the fake upstream, whose `fake-judge` model answers judge prompts with verdicts (the `judge` fault:
an "I do not know." answer scores 0, any other the top of the scale), driven by the official openai
SDK:
- streamed requests under a shadow rollout: every stream's answer, once the stream has ended, is
  mirrored to the candidate, compared with it and the pair judged;
- a canary whose candidate answers 30% of prompts "I do not know." (`wrong=0.3`), with no grader but
  the online judge: the judge lowers the candidate's quality signal and the rollout rolls back;
- every judge call is a ledger row tagged `judge`, of the rollout's experiment, never of the tenant.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.cli import run_margin
from tests.support.processes import fake_upstream, gateway


def config(upstream: str, *, shadow: float, mode: str = "scored") -> str:
    def deployment(name: str) -> str:
        return (
            f"  - {{name: {name}, provider: openai_compat, model: fake-{name}, base_url: '{upstream}/v1', "
            f'price: {{input: "1", output: "2"}}}}\n'
        )

    return (
        "cache: {enabled: false}\n"
        "rollouts: {refresh_s: 0.2, decide_every_s: 0.3, flush_every_s: 0.2, judge_concurrency: 4}\n"
        "deployments:\n" + deployment("good") + deployment("worse") + deployment("equal") + deployment("judge")
        + "models:\n"
        "  - name: assistant\n"
        "    deployments: [good]\n"
        "    rollout:\n"
        "      min_requests: 30\n"
        f"      shadow: {{share: {shadow}, min_requests: 1000, min_duration_s: 0, budget_usd: '5'}}\n"
        f"      judge: {{model: judge, share: 1.0, mode: {mode}}}\n"
        "      margins: {error_rate: 0.02, quality: 0.02, latency: null, ttft: null}\n"
        "      steps: [{share: 0.5, min_requests: 30, min_duration_s: 0}]\n"
        "  - {name: judge, deployments: [judge]}\n"
    )  # fmt: skip


@dataclass(frozen=True)
class Served:
    url: str
    tmp: Path

    def start(self, candidate: str) -> str:
        done = run_margin("rollout", "start", "assistant", "--candidate", candidate, "--skip-gate",
                          "--config", self.tmp / "margin.yaml", data_dir=self.tmp / "data")  # fmt: skip
        assert done.returncode == 0, done.stderr
        return self.rollout()["rollout_id"]  # type: ignore[no-any-return]

    def rollout(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/admin/rollouts/assistant", timeout=5).json()  # type: ignore[no-any-return]

    def wait_for(self, state: str, seconds: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while (found := self.rollout())["state"] != state:
            assert time.monotonic() < deadline, found
            time.sleep(0.1)
        return found

    def ledger(self, *, rows: int) -> list[tuple[str, str, str, dict[str, Any]]]:
        """The ledger once it holds `rows` rows (its writer adds them in batches, a moment later)."""
        deadline = time.monotonic() + 10
        while True:
            with sqlite3.connect(self.tmp / "data" / "margin.db") as conn:
                found = conn.execute("SELECT key_id, team, tags, extra FROM ledger_attempts").fetchall()
            if len(found) >= rows or time.monotonic() > deadline:
                return [(k, t, tags, json.loads(e) if e else {}) for k, t, tags, e in found]
            time.sleep(0.1)


def serve(tmp: Path, *, shadow: float, mode: str = "scored") -> Iterator[Served]:
    faults = ("--fault", "fake-worse=wrong=0.3", "--fault", "fake-judge=judge")
    with fake_upstream(*faults) as upstream, gateway(config(upstream, shadow=shadow, mode=mode), tmp) as url:
        yield Served(url, tmp)


@pytest.fixture(params=["scored", "pairwise"])
def shadowed(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Served]:
    yield from serve(tmp_path, shadow=1.0, mode=request.param)


@pytest.fixture
def canary(tmp_path: Path) -> Iterator[Served]:
    yield from serve(tmp_path, shadow=0)


def client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)


def streamed(served: Served, prompt: str, session: str) -> str:
    stream = client(served).chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": prompt}], stream=True,
        extra_headers={"x-margin-session": session},
    )  # fmt: skip
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def arms(served: Served, rollout_id: str) -> dict[str, Any]:
    view = httpx.get(f"{served.url}/admin/rollouts/{rollout_id}", timeout=5).json()
    return view.get("analysis", {}).get("arms", {})  # type: ignore[no-any-return]


def test_streamed_answers_are_shadowed_compared_and_judged(shadowed: Served) -> None:
    rid = shadowed.start("equal")
    shadowed.wait_for("shadow")
    for i in range(20):
        assert streamed(shadowed, f"question {i}", f"s{i}") == f"question {i}"  # the client got stable's answer
    deadline = time.monotonic() + 30
    while (shadow := arms(shadowed, rid).get("candidate", {})).get("quality_n", 0) < 40:
        assert time.monotonic() < deadline, shadow
        time.sleep(0.2)
    # 20 shadow comparisons and 20 judged pairs, each pair's two orders agreeing
    assert shadow["requests"] == 20 and shadow["quality_n"] == 40 and shadow["quality"] == 1.0
    assert shadow["judge"] == {"agreed": 20, "disagreed": 0, "unparseable": 0, "error": 0, "dropped": 0}
    rows = shadowed.ledger(rows=20 + 20 + 40)  # the clients', the shadow calls, the judge calls
    judge_rows = [r for r in rows if "judge" in r[2]]
    assert len([r for r in rows if "shadow" in r[2]]) == 20 and len(judge_rows) == 40
    assert all(k == t == f"rollout:{rid}" and extra["rollout_arm"] == "judge" for k, t, _, extra in judge_rows)
    done = run_margin("rollout", "status", "assistant", "--config", shadowed.tmp / "margin.yaml",
                      data_dir=shadowed.tmp / "data")  # fmt: skip
    assert "judge on candidate  agreed 20  disagreed 0  unparseable 0  error 0  dropped 0" in done.stdout


def test_the_online_judge_rolls_a_worse_candidate_back(canary: Served) -> None:
    rid = canary.start("worse")
    canary.wait_for("canary")
    sdk = client(canary)
    deadline = time.monotonic() + 90
    asked = 0
    while canary.rollout()["state"] == "canary":
        assert time.monotonic() < deadline, canary.rollout()
        for _ in range(20):
            asked += 1
            if asked % 2:
                streamed(canary, f"question {asked}", f"s{asked}")
            else:
                sdk.chat.completions.create(
                    model="assistant", messages=[{"role": "user", "content": f"question {asked}"}],
                    extra_headers={"x-margin-session": f"s{asked}"},
                )  # fmt: skip
    final = canary.rollout()
    assert final["state"] == "rolled_back" and final["reason"].startswith("quality: candidate worse")
    history = httpx.get(f"{canary.url}/admin/rollouts/{rid}/history", timeout=5).json()
    last = history["transitions"][-1]["snapshot"]["arms"]
    stable, candidate = last["stable"], last["candidate"]
    assert stable["quality"] == 1.0 and candidate["quality"] < 0.9  # only the judge graded: it saw the refusals
    assert candidate["judge"]["agreed"] > 0 and candidate["judge"]["unparseable"] == 0
    judge_calls = 2 * (candidate["judge"]["agreed"] + stable_judged(last))
    rows = canary.ledger(rows=asked + judge_calls)
    judge_rows = [r for r in rows if "judge" in r[2]]
    assert judge_rows and all(k == t == f"rollout:{rid}" for k, t, *_ in judge_rows)  # the experiment's
    tenant = [r for r in rows if "judge" not in r[2]]
    assert len(tenant) == asked and not any(t.startswith("rollout:") for _, t, *_ in tenant)


def stable_judged(arms: dict[str, Any]) -> int:
    return int(arms["stable"].get("judge", {}).get("agreed", 0))
