"""`margin tune dataset` end to end: a served margin in front of the fake upstream keeps a production
sample of the tiered group `support` (cheap and premium tiers); the installed script builds a dataset
from it through real HTTP. Samples the premium tier answered keep their answer; the others are asked
of the teacher again, and those calls are ledger rows tagged `tuning` (class batch) on the premium
deployment, charged to a `tag:tuning` budget. A prompt file goes through the batch tier, its lines
tagged `tuning` and `batch`. Redaction, dedup, splits and the bad-input errors are checked on the
files the command wrote."""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.support.cli import run_margin
from tests.support.processes import fake_upstream, gateway

PROMPTS = 40
WORDS = [
    *["invoice", "refund", "shipping", "password", "login", "account", "billing", "card", "order"],
    *["parcel", "delivery", "address", "upgrade", "cancel", "subscription", "plan", "receipt"],
    *["discount", "voucher", "warranty", "repair", "screen", "battery", "charger", "cable", "router"],
    *["modem", "signal", "outage", "speed", "contract", "roaming", "message", "voicemail", "backup"],
]


def config(upstream: str) -> str:
    def deployment(name: str, price: str) -> str:
        return (
            f"  - {{name: {name}, provider: openai_compat, model: fake-{name}, base_url: '{upstream}/v1', "
            f'price: {{input: "{price}", output: "{price}"}}}}\n'
        )

    return (
        "deployments:\n" + deployment("cheap", "0.5") + deployment("premium", "10")
        + "models:\n"
        "  - name: support\n"
        "    tiers: [{name: cheap, deployments: [cheap]}, {name: premium, deployments: [premium]}]\n"
        "    sample: {share: 1.0}\n"
        "tuning:\n"
        "  sources: [{group: support, teacher: premium, teams: [default]}]\n"  # keyless requests: team default
        "  min_examples: 10\n"
        "budgets:\n"
        "  - {scope: 'tag:tuning', limit_usd: '5', window: month}\n"
    )  # fmt: skip


@dataclass(frozen=True)
class Served:
    url: str
    tmp: Path

    @property
    def db(self) -> Path:
        return self.tmp / "data" / "margin.db"


def prompt(i: int) -> str:
    rng = random.Random(i)
    return f"Ticket {i}: " + " ".join(rng.sample(WORDS, 10))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("tuning")
    with fake_upstream() as upstream, gateway(config(upstream), tmp) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(PROMPTS):
                text = prompt(i) + (" reach me at jane.doe@example.com" if i == 0 else "")
                headers = {"x-margin-tier": "cheap"} if i % 2 else {}
                body = {"model": "support", "messages": [{"role": "user", "content": text}]}
                assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
            client.post(
                "/v1/chat/completions", json={"model": "support", "messages": [{"role": "user", "content": prompt(2)}]}
            ).raise_for_status()  # an exact duplicate
        _wait_samples(tmp / "data" / "margin.db", PROMPTS + 1)
        yield Served(url, tmp)


def _wait_samples(db: Path, expected: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            count = conn.execute("SELECT COUNT(*) FROM eval_samples").fetchone()[0]
        if count >= expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"the production sample kept {count} of {expected} requests")


def margin(served: Served, *args: str | Path) -> tuple[int, str, str]:
    done = run_margin(*args, "--config", served.tmp / "margin.yaml", data_dir=served.tmp / "data")
    return done.returncode, done.stdout, done.stderr


def tuning_rows(db: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute("SELECT * FROM ledger_attempts WHERE tags LIKE '%\"tuning\"%'").fetchall()


def wait_rows(db: Path, expected: int, timeout: float = 15) -> list[sqlite3.Row]:
    deadline = time.monotonic() + timeout
    while len(rows := tuning_rows(db)) < expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return rows


def test_dataset_from_traffic_asks_the_teacher_only_where_it_did_not_answer(served: Served) -> None:
    code, stdout, stderr = margin(served, "tune", "dataset", "build", "--group", "support", "--since", "1d",
                                  "--name", "support-ds", "--url", served.url)  # fmt: skip
    assert code == 0, stderr
    manifest = json.loads(stdout)
    assert manifest["dedup"]["exact"] == 1 and sum(manifest["counts"].values()) == PROMPTS
    assert manifest["teacher"] == "premium" and manifest["teacher_calls"] == PROMPTS // 2  # the cheap-pinned half
    rows = wait_rows(served.db, PROMPTS // 2)
    assert len(rows) == PROMPTS // 2
    assert {r["deployment"] for r in rows} == {"premium"} and {r["endpoint_class"] for r in rows} == {"batch"}
    assert Decimal(manifest["teacher_cost_usd"]) == sum(Decimal(r["cost_total"]) for r in rows) > 0
    budget = httpx.get(f"{served.url}/admin/budgets/status", timeout=5).json()["data"]
    spent = next(Decimal(b["spent"]) for b in budget if b["scope"] == "tag:tuning")
    assert spent == Decimal(manifest["teacher_cost_usd"])  # the tuning budget charged the teacher's calls, only them
    code, stdout, _ = margin(served, "tune", "dataset", "export", "support-ds")
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert len(lines) == PROMPTS and all(set(line) == {"messages"} for line in lines)
    assert all(line["messages"][-1]["role"] == "assistant" for line in lines)
    texts = " ".join(m["content"] for line in lines for m in line["messages"])
    assert "jane.doe" not in texts and "[EMAIL]" in texts
    code, stdout, _ = margin(served, "tune", "dataset", "export", "support-ds", "--split", "test")
    test_prompts = {json.loads(line)["messages"][0]["content"] for line in stdout.splitlines()}
    code, stdout, _ = margin(served, "tune", "dataset", "export", "support-ds", "--split", "train")
    assert test_prompts and not test_prompts & {
        json.loads(line)["messages"][0]["content"] for line in stdout.splitlines()
    }


def test_prompt_file_through_the_batch_tier_is_tagged_tuning(served: Served) -> None:
    path = served.tmp / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": prompt(1000 + i)}) + "\n" for i in range(12)))
    before = len(tuning_rows(served.db))
    code, stdout, stderr = margin(served, "tune", "dataset", "build", "--name", "faq", "--from-prompts", path,
                                  "--teacher", "premium", "--group", "support", "--via", "batch",
                                  "--url", served.url, "--poll-s", "0.2")  # fmt: skip
    assert code == 0, stderr
    manifest = json.loads(stdout)
    assert (
        manifest["source"] == "prompts" and manifest["teacher_calls"] == 12 and sum(manifest["counts"].values()) == 12
    )
    rows = wait_rows(served.db, before + 12)[before:]
    assert len(rows) == 12 and all({"tuning", "batch"} <= set(json.loads(r["tags"])) for r in rows)
    assert {r["deployment"] for r in rows} == {"premium"}


def test_bad_input_names_the_problem_and_writes_nothing(served: Served) -> None:
    code, _, stderr = margin(served, "tune", "dataset", "build", "--group", "support", "--teacher", "platinum",
                             "--url", served.url, "--name", "nope")  # fmt: skip
    assert code == 1 and "teacher 'platinum' is neither a tier of 'support' (tiers: cheap, premium)" in stderr
    tiny = served.tmp / "tiny.jsonl"
    tiny.write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) + "\n"
    )
    code, _, stderr = margin(served, "tune", "dataset", "build", "--from-jsonl", tiny, "--name", "tiny")
    assert code == 1 and "fewer than tuning.min_examples (10): nothing was written" in stderr
    empty = served.tmp / "empty.jsonl"
    empty.write_text("")
    code, _, stderr = margin(served, "tune", "dataset", "build", "--from-jsonl", empty, "--name", "empty")
    assert code == 1 and "no examples in it" in stderr
    code, _, stderr = margin(served, "tune", "dataset", "build", "--group", "nobody", "--teacher", "premium")
    assert code == 1 and "unknown model group 'nobody'" in stderr
    code, _, stderr = margin(served, "tune", "dataset", "show", "tiny")
    assert code == 1 and "no dataset" in stderr
