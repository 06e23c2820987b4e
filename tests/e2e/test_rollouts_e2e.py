"""Rollouts end to end (issue 17, section 5), the installed `margin` against a served gateway in front
of the fake upstream, driven by the official openai SDK:
- a worse candidate (`wrong=0.3`: the fake answers 30% of prompts "I do not know.") is rejected by
  the offline gate: `margin rollout start` exits 1 and the rollout is aborted, the verdict audited;
- with the gate skipped, the canary rolls the same candidate back by itself (the online grader sees
  the refusals), every session is back on stable, the transition is in the history and the metrics;
- an equal candidate passes the gate, goes through both canary steps and is promoted;
- bad input: an unknown deployment, a second rollout on a group, feedback for an unknown request id.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.cli import run_margin
from tests.support.processes import fake_upstream, gateway

ITEMS = 40


def config(upstream: str) -> str:
    def deployment(name: str) -> str:
        return (
            f"  - {{name: {name}, provider: openai_compat, model: fake-{name}, base_url: '{upstream}/v1', "
            f'price: {{input: "1", output: "2"}}}}\n'
        )

    return (
        "cache: {enabled: false}\n"
        "rollouts: {refresh_s: 0.2, decide_every_s: 0.3, flush_every_s: 0.2}\n"
        "deployments:\n" + deployment("good") + deployment("worse") + deployment("equal")
        + "models:\n"
        "  - name: assistant\n"
        "    deployments: [good]\n"
        "    gates: {quality: {max_drop: 0.02, confidence: 0.95}}\n"
        "    rollout:\n"
        "      min_requests: 30\n"
        "      online_grader: {type: regex, pattern: '^(?!I do not know)'}\n"
        "      margins: {error_rate: 0.02, quality: 0.02, latency: 0.3, ttft: 0.3}\n"
        "      steps: [{share: 0.2, min_requests: 30, min_duration_s: 1},\n"
        "              {share: 0.5, min_requests: 40, min_duration_s: 1}]\n"
        "  - {name: worse, deployments: [worse]}\n"  # the gate's eval runs ask for each deployment by name
        "  - {name: equal, deployments: [equal]}\n"
    )  # fmt: skip


@dataclass(frozen=True)
class Served:
    url: str
    tmp: Path
    eval_set: Path

    @property
    def config(self) -> Path:
        return self.tmp / "margin.yaml"


def write_set(tmp: Path) -> Path:
    path = tmp / "echo.jsonl"
    lines = [{"id": f"q{i:02d}", "prompt": f"the answer is {i * 7}", "reference": f"the answer is {i * 7}"}
             for i in range(ITEMS)]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp / "echo.yaml").write_text("name: echo\nversion: 1\ngrader: exact\nparams: {temperature: 0, max_tokens: 32}\n")
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with fake_upstream("--fault", "fake-worse=wrong=0.3") as upstream, gateway(config(upstream), tmp_path) as url:
        yield Served(url, tmp_path, write_set(tmp_path))


def margin(served: Served, *args: str | Path) -> tuple[int, str, str]:
    done = run_margin(*args, "--config", served.config, data_dir=served.tmp / "data")
    return done.returncode, done.stdout, done.stderr


def status(served: Served, ref: str = "assistant") -> dict:  # type: ignore[type-arg]
    code, out, err = margin(served, "rollout", "status", ref, "--json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def traffic(served: Served, until: str, *, seconds: float = 60, session_prefix: str = "s") -> Counter[str]:
    """Sessions ask until the rollout reaches `until` (or `seconds` pass); which deployments answered."""
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    answered: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        for _ in range(20):
            i += 1
            raw = client.chat.completions.with_raw_response.create(
                model="assistant", messages=[{"role": "user", "content": f"question {i}"}],
                extra_headers={"x-margin-session": f"{session_prefix}{i}"},
            )  # fmt: skip
            answered[raw.headers["x-margin-route"].split("deployment=")[1].split(";")[0]] += 1
        if status(served)["state"] == until:
            return answered
    raise AssertionError(f"the rollout never reached {until}: {status(served)}")


def test_worse_candidate_rejected_by_the_gate_then_rolled_back_by_the_canary(served: Served) -> None:
    code, out, err = margin(served, "rollout", "start", "assistant", "--candidate", "worse",
                            "--eval-set", served.eval_set, "--url", served.url)  # fmt: skip
    assert code == 1, err
    assert "quality" in out and "FAIL" in out
    rejected = status(served)
    assert rejected["state"] == "aborted" and "offline gate failed" in rejected["reason"]

    code, out, err = margin(served, "rollout", "start", "assistant", "--candidate", "worse", "--skip-gate")
    assert code == 0, err
    answered = traffic(served, "rolled_back")
    assert answered["worse"] > 0 and answered["good"] > 0
    after: Counter[str] = Counter()
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    for i in range(30):
        raw = client.chat.completions.with_raw_response.create(
            model="assistant", messages=[{"role": "user", "content": "again"}],
            extra_headers={"x-margin-session": f"s{i + 1}"},
        )  # fmt: skip
        after[raw.headers["x-margin-route"]] += 1
    assert all("deployment=good" in route for route in after)  # every session back on stable
    code, out, err = margin(served, "rollout", "history", "assistant", "--json")
    transitions = json.loads(out)["transitions"]
    last = transitions[-1]
    assert last["to"] == "rolled_back" and last["actor"].startswith("auto:decider@")
    assert "quality" in last["reason"] and last["snapshot"]["signals"]
    states = [t["to"] for t in transitions]
    assert states[:3] == ["pending", "gated", "canary"] and states[-1] == "rolled_back"
    metrics = httpx.get(f"{served.url}/metrics", timeout=5).text
    counted = 'actor="auto",from_state="canary",model_group="assistant",to_state="rolled_back"'
    assert f"margin_rollout_transitions_total{{{counted}}} 1.0" in metrics
    with sqlite3.connect(served.tmp / "data" / "margin.db") as conn:
        arms = Counter(json.loads(e).get("rollout_arm") for (e,) in conn.execute("SELECT extra FROM ledger_attempts"))
    assert arms["candidate"] > 0 and arms["stable"] > 0


def test_equal_candidate_passes_the_gate_and_is_promoted(served: Served) -> None:
    code, out, err = margin(served, "rollout", "start", "assistant", "--candidate", "equal",
                            "--eval-set", served.eval_set, "--url", served.url)  # fmt: skip
    assert code == 0, err + out
    answered = traffic(served, "promoted", seconds=90)
    assert answered["equal"] > 0
    final = status(served)
    assert final["candidate_share"] == 1.0
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    routes = {client.chat.completions.with_raw_response.create(
        model="assistant", messages=[{"role": "user", "content": "hello"}]).headers["x-margin-route"]
        for _ in range(10)}  # fmt: skip
    assert all("deployment=equal" in r for r in routes)
    code, out, _ = margin(served, "rollout", "history", "assistant")
    assert "promoted" in out and "every signal within its margin" in out


def test_bad_input_is_refused_clearly_and_nothing_is_half_written(served: Served) -> None:
    code, _, err = margin(served, "rollout", "start", "assistant", "--candidate", "nope", "--skip-gate")
    assert code == 2 and "unknown deployment 'nope'" in err
    code, _, err = margin(served, "rollout", "start", "missing", "--candidate", "equal", "--skip-gate")
    assert code == 2 and "unknown model group 'missing'" in err
    code, _, err = margin(served, "rollout", "status")
    assert code == 0
    code, _, err = margin(served, "rollout", "start", "assistant", "--candidate", "equal", "--skip-gate")
    assert code == 0, err
    code, _, err = margin(served, "rollout", "start", "assistant", "--candidate", "worse", "--skip-gate")
    assert code == 2 and "already has a rollout in progress" in err
    listed = httpx.get(f"{served.url}/admin/rollouts", timeout=5).json()
    assert [r["candidate"] for r in listed["recent"]] == ["equal"]  # the refused ones left nothing behind
    unknown = httpx.post(f"{served.url}/v1/feedback", json={"request_id": "req_nope", "score": 1}, timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "request_id"
    bad = httpx.post(f"{served.url}/v1/feedback", json={"request_id": "req_nope", "score": 3}, timeout=10)
    assert bad.status_code == 400
    asked = httpx.post(f"{served.url}/v1/chat/completions", timeout=10, headers={"x-margin-session": "fb"},
                       json={"model": "assistant", "messages": [{"role": "user", "content": "rate me"}]})  # fmt: skip
    given = httpx.post(f"{served.url}/v1/feedback", timeout=10,
                       json={"request_id": asked.headers["x-request-id"], "score": 0.5, "comment": "ok"})  # fmt: skip
    assert given.status_code == 200 and given.json()["rollout_id"] is not None
    code, _, err = margin(served, "rollout", "abort", "assistant")
    assert code == 0
    verdict = httpx.post(f"{served.url}/admin/rollouts/assistant/verdict", timeout=5)
    assert verdict.status_code == 412 and verdict.json()["verdict"] == "fail"
