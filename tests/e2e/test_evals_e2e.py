"""`margin eval` end to end: the installed script runs an eval set through a served gateway in front
of the fake upstream, for a good deployment, a worse one (the fake answers a fifth of the prompts
wrongly, `wrong=0.2`) and an equal one; the calls are ledger rows tagged `eval` at class batch;
`margin eval compare` rejects the worse candidate (exit 1, JUnit that parses) and passes the equal
one. The same run in-process (no --url) writes the same kind of rows to its own ledger."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from tests.support.cli import run_margin
from tests.support.processes import fake_upstream, gateway

ITEMS = 40
WRONG_SHARE = "0.2"


def config(upstream: str) -> str:
    def deployment(name: str) -> str:
        return (
            f"  - {{name: {name}, provider: openai_compat, model: fake-{name}, base_url: '{upstream}/v1', "
            f'price: {{input: "1", output: "2"}}}}\n'
        )

    return (
        "deployments:\n" + deployment("good") + deployment("worse") + deployment("equal")
        + "models:\n"
        "  - {name: assistant, deployments: [good],\n"
        "     gates: {quality: {max_drop: 0.02, confidence: 0.95}, error_rate: 0.01, p95_latency_ms: 5000}}\n"
        "  - {name: worse, deployments: [worse]}\n"
        "  - {name: equal, deployments: [equal]}\n"
    )  # fmt: skip


@dataclass(frozen=True)
class Served:
    url: str
    upstream: str
    tmp: Path
    config: Path
    eval_set: Path

    @property
    def ledger(self) -> Path:
        return self.tmp / "data" / "margin.db"


def write_set(tmp: Path) -> Path:
    """Items the fake answers right by echoing: the reference is the prompt itself."""
    path = tmp / "echo.jsonl"
    lines = [
        {"id": f"q{i:02d}", "prompt": f"the answer is {i * 7}", "reference": f"the answer is {i * 7}",
         "tags": ["low" if i < ITEMS // 2 else "high"]}
        for i in range(ITEMS)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp / "echo.yaml").write_text("name: echo\nversion: 1\ngrader: exact\nparams: {temperature: 0, max_tokens: 32}\n")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("evals")
    with fake_upstream("--fault", f"fake-worse=wrong={WRONG_SHARE}") as upstream:
        text = config(upstream)
        with gateway(text, tmp) as url:
            yield Served(url, upstream, tmp, tmp / "margin.yaml", write_set(tmp))


def margin(served: Served, *args: str | Path) -> tuple[int, str, str]:
    done = run_margin(*args, data_dir=served.tmp / "cli-data")
    return done.returncode, done.stdout, done.stderr


def eval_run(served: Served, model: str, *extra: str) -> Path:
    out = served.tmp / f"{model}.results.jsonl"
    code, stdout, stderr = margin(served, "eval", "run", served.eval_set, "--model", model, "--url", served.url,
                                  "--out", out, "--concurrency", "4", *extra)  # fmt: skip
    assert code == 0, stderr
    assert "quality (mean, 95% CI)" in stdout
    return out


def results(path: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    return {row["id"]: row for row in map(json.loads, path.read_text().splitlines())}


def eval_rows(db: Path, expected: int, timeout: float = 15) -> list[sqlite3.Row]:
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT * FROM ledger_attempts WHERE tags LIKE '%\"eval\"%'").fetchall()
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def fake_calls(served: Served) -> dict[str, int]:
    calls: dict[str, int] = httpx.get(f"{served.upstream}/_fake/stats", timeout=5).json()["calls"]
    return calls


def test_runs_are_graded_metered_and_resumable(served: Served) -> None:
    good = results(eval_run(served, "assistant"))
    assert len(good) == ITEMS and all(r["passed"] and r["deployment"] == "good" for r in good.values())
    assert all(r["cost_usd"] is not None and float(r["cost_usd"]) > 0 for r in good.values())
    worse = results(eval_run(served, "worse"))
    wrong = sorted(i for i, r in worse.items() if not r["passed"])
    assert 0 < len(wrong) < ITEMS // 2 and all(worse[i]["answer"] == "I do not know." for i in wrong)
    rerun = results(eval_run(served, "worse", "--retry-errors"))  # no call failed: nothing to retry
    assert wrong == sorted(i for i, r in rerun.items() if not r["passed"])
    rows = eval_rows(served.ledger, 2 * ITEMS)
    assert len(rows) == 2 * ITEMS
    assert {r["endpoint_class"] for r in rows} == {"batch"} and all(json.loads(r["tags"]) == ["eval"] for r in rows)
    assert {r["request_id"] for r in rows} == {r["request_id"] for r in [*good.values(), *worse.values()]}
    before = fake_calls(served)
    code, _, stderr = margin(served, "eval", "run", served.eval_set, "--model", "assistant", "--url", served.url,
                             "--out", served.tmp / "assistant.results.jsonl")  # fmt: skip
    assert code == 0 and f"{ITEMS} items already done" in stderr
    assert fake_calls(served) == before  # nothing asked twice


def test_compare_rejects_the_worse_candidate_and_passes_an_equal_one(served: Served) -> None:
    base, worse = served.tmp / "assistant.results.jsonl", served.tmp / "worse.results.jsonl"
    if not base.exists() or not worse.exists():
        eval_run(served, "assistant"), eval_run(served, "worse")
    equal = results(eval_run(served, "equal", "--stream"))
    assert all(r["ttft_ms"] is not None and r["cost_usd"] is None for r in equal.values())
    gates = ("--gates-from", served.config, "--model-group", "assistant")
    code, report, stderr = margin(served, "eval", "compare", base, worse, *gates, "--format", "junit")
    assert code == 1, stderr
    suite = ElementTree.fromstring(report.encode()).find("testsuite")
    assert suite is not None
    failed = {case.get("name"): case.find("failure") for case in suite.iter("testcase")}
    assert set(failed) == {"coverage", "quality", "p95_latency_ms", "error_rate"}
    assert failed["quality"] is not None and failed["coverage"] is None and failed["error_rate"] is None
    assert "lower bound" in (failed["quality"].get("message") or "")
    code, report, stderr = margin(served, "eval", "compare", base, served.tmp / "equal.results.jsonl", *gates)
    assert code == 0, report + stderr
    assert "verdict: PASS" in report and "+0.000 [+0.000, +0.000]" in report


def test_an_unknown_model_or_a_down_gateway_is_a_clear_error(served: Served) -> None:
    code, _, stderr = margin(served, "eval", "run", served.eval_set, "--model", "nope", "--url", served.url,
                             "--out", served.tmp / "nope.jsonl")  # fmt: skip
    assert code == 2 and "--model 'nope' does not exist on this gateway" in stderr
    assert not (served.tmp / "nope.jsonl").exists()  # nothing half-written
    code, _, stderr = margin(served, "eval", "run", served.eval_set, "--model", "x", "--url", "http://127.0.0.1:9",
                             "--out", served.tmp / "down.jsonl")  # fmt: skip
    assert code == 2 and "margin cannot be reached" in stderr


def test_an_in_process_run_writes_eval_rows_to_its_own_ledger(served: Served, tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = tmp_path / "inproc.jsonl"
    done = run_margin("eval", "run", served.eval_set, "--model", "worse", "--config", served.config, "--out", out,
                      data_dir=data)  # fmt: skip
    assert done.returncode == 0, done.stderr
    in_process = results(out)
    over_http = results(served.tmp / "worse.results.jsonl") if (served.tmp / "worse.results.jsonl").exists() else None
    assert len(in_process) == ITEMS
    if over_http is not None:  # the same deployment answers the same items wrongly, in-process or not
        assert {i for i, r in in_process.items() if r["passed"]} == {i for i, r in over_http.items() if r["passed"]}
    rows = eval_rows(data / "margin.db", ITEMS)
    assert len(rows) == ITEMS and {r["endpoint_class"] for r in rows} == {"batch"}
