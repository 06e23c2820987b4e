"""`margin tune promote` end to end, through a served margin in front of the fake upstream: the
teacher (`premium`) echoes, the current cheap deployment answers 30% of prompts "I do not know.",
a good student echoes and a bad one answers 60% wrongly. A dataset is built by the teacher from a
prompt file; a succeeded job (its record and adapter written as the trainer writes them) is
promoted. The bad student fails the gate (vs the teacher on both sets) and nothing changes: no
rollout, the stable deployment still answers. The good student passes: a rollout starts, gated,
and the gateways move it into its canary with the student taking a share of live traffic."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from margin.tuning.jobs import create_job, update_job
from margin.tuning.settings import TrainSettings
from tests.support.cli import run_margin
from tests.support.processes import fake_upstream, gateway

ITEMS = 30


def config(upstream: str, tmp: Path) -> str:
    def deployment(name: str) -> str:
        return (
            f"  - {{name: {name}, provider: openai_compat, model: fake-{name}, base_url: '{upstream}/v1', "
            f'price: {{input: "1", output: "1"}}}}\n'
        )

    return (
        "cache: {enabled: false}\n"
        "rollouts: {refresh_s: 0.2, decide_every_s: 0.3, flush_every_s: 0.2}\n"
        "deployments:\n" + "".join(deployment(n) for n in ("cheap", "premium", "student", "badstudent"))
        + "models:\n"
        "  - name: support\n"
        "    tiers: [{name: cheap, deployments: [cheap]}, {name: premium, deployments: [premium]}]\n"
        "    routing: {default_tier: cheap}\n"
        "    sample: {share: 0.01}\n"
        "    gates: {quality: {max_drop: 0.05, confidence: 0.95}}\n"
        f"    rollout: {{eval_set: '{tmp / 'echo.jsonl'}', min_requests: 30,\n"
        "              steps: [{share: 0.5, min_requests: 1000, min_duration_s: 600}]}\n"
        "  - {name: student, deployments: [student]}\n"  # the gate asks each deployment by name
        "  - {name: badstudent, deployments: [badstudent]}\n"
        "tuning:\n"
        "  sources: [{group: support, teacher: premium}]\n"
        "  min_examples: 10\n"
        "  promotion: {grader: exact}\n"
    )  # fmt: skip


@dataclass(frozen=True)
class Served:
    url: str
    tmp: Path


def margin(served: Served, *args: str | Path) -> tuple[int, str, str]:
    done = run_margin(*args, "--config", served.tmp / "margin.yaml", data_dir=served.tmp / "data", timeout=300)
    return done.returncode, done.stdout, done.stderr


def write_files(tmp: Path) -> None:
    items = [{"id": f"q{i}", "prompt": f"the answer is {i * 7}", "reference": f"the answer is {i * 7}"}
             for i in range(ITEMS)]  # fmt: skip
    (tmp / "echo.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    (tmp / "echo.yaml").write_text("name: echo\nversion: 1\ngrader: exact\nparams: {temperature: 0}\n")
    prompts = [{"prompt": f"order {i}: route ticket about {w} number {i * 13}"}
               for i, w in enumerate(["refund", "login", "parcel", "invoice", "modem", "screen"] * 15)]  # fmt: skip
    (tmp / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("promote")
    write_files(tmp)
    faults = ("--fault", "fake-cheap=wrong=0.3", "--fault", "fake-badstudent=wrong=0.6")
    with fake_upstream(*faults) as upstream, gateway(config(upstream, tmp), tmp) as url:
        yield Served(url, tmp)


def succeeded_job(served: Served) -> str:
    """A job as the trainer leaves it when it succeeds: job.json and a non-empty adapter.gguf."""
    directory = create_job(served.tmp / "data", dataset="ds", base="local", settings=TrainSettings())
    (directory / "adapter.gguf").write_bytes(b"GGUF\x03\x00\x00\x00")
    update_job(directory, state="succeeded", adapter_gguf=str(directory / "adapter.gguf"))
    return directory.name


def router_trained_with(served: Served, student: Path, rows: int) -> None:
    """`margin router train --add` appends the student's outcomes to a file of other outcomes."""
    rng = random.Random(4)
    base = served.tmp / "base-outcomes.jsonl"
    lines = [{"prompt": f"question {i} about {rng.choice(['maths', 'poems', 'code'])}", "weak_score": rng.random(),
              "strong_score": rng.random()} for i in range(200)]  # fmt: skip
    base.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run_margin("router", "train", base, "--add", student, "--embedder", "hashing",
                      "--out", served.tmp / "router.npz", data_dir=served.tmp / "data")  # fmt: skip
    code, out, err = done.returncode, done.stdout, done.stderr
    assert code == 0, err
    assert f"on {200 + rows} prompts" in out


def rollouts(served: Served) -> list[dict[str, Any]]:
    """Every rollout of `support` the store holds, ended ones included (newest first)."""
    listed = httpx.get(f"{served.url}/admin/rollouts", timeout=5).json()
    return [r for r in listed["recent"] if r["model_group"] == "support"]


def test_bad_student_changes_nothing_good_student_starts_a_canary(served: Served) -> None:
    code, _, err = margin(served, "tune", "dataset", "build", "--name", "ds", "--from-prompts",
                          served.tmp / "prompts.jsonl", "--teacher", "premium", "--group", "support",
                          "--url", served.url)  # fmt: skip
    assert code == 0, err
    job = succeeded_job(served)

    code, out, err = margin(served, "tune", "promote", job, "--group", "support", "--candidate", "badstudent",
                            "--url", served.url)  # fmt: skip
    assert code == 1, err + out
    assert "gate failed, nothing changed" in err and "of the teacher's mean score, below 90%" in err
    assert rollouts(served) == []

    code, out, err = margin(served, "tune", "promote", job, "--group", "support", "--candidate", "student",
                            "--url", served.url)  # fmt: skip
    assert code == 0, err + out
    assert "student vs teacher premium: 100.0% of its mean score" in out
    work = served.tmp / "data" / "tuning" / "jobs" / job / "promotion"
    verdict = json.loads((work / "verdict.json").read_text())
    assert verdict["eval_set"]["passed"] and verdict["test_split"]["passed"]
    rows = [json.loads(line) for line in (work / "router-outcomes.jsonl").read_text().splitlines()]
    tests = verdict["test_split"]["vs_cheap"]["candidate"]["requests"]
    assert len(rows) == ITEMS + tests and all(r["weak_score"] == r["strong_score"] == 1.0 for r in rows)
    assert {r["benchmark"] for r in rows} == {"tuning:eval_set", "tuning:test_split"}
    router_trained_with(served, work / "router-outcomes.jsonl", len(rows))
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)
    answered: Counter[str] = Counter()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and answered["student"] == 0:
        for i in range(10):
            raw = client.chat.completions.with_raw_response.create(
                model="support", messages=[{"role": "user", "content": f"hello {i}"}],
                extra_headers={"x-margin-session": f"s{i}-{time.monotonic()}"},
            )  # fmt: skip
            answered[raw.headers["x-margin-route"].split("deployment=")[1].split(";")[0]] += 1
    live = rollouts(served)
    assert [(r["candidate"], r["stable"], r["state"]) for r in live] == [("student", "cheap", "canary")]
    assert answered["student"] > 0 and answered["cheap"] > 0

    code, _, err = margin(served, "tune", "promote", job, "--group", "support", "--candidate", "student",
                          "--url", served.url)  # fmt: skip
    assert code == 2 and "already has a rollout in progress" in err
