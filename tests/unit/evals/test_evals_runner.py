"""Runs: every item asked and graded, results appended as they finish, a rerun resumes."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from evals_support import ScriptedCompleter, answer

from margin.evals.completion import Completion
from margin.evals.errors import GatewayUnusable, ResultsFileError
from margin.evals.graders.protocol import GraderEnv
from margin.evals.loader import EvalSet, load_eval_set
from margin.evals.results import read_results
from margin.evals.runner import Runner, check_models
from margin.evals.summary import summarise


def echo_set(tmp_path: Path, count: int = 6) -> EvalSet:
    lines = [
        {"id": f"q{i}", "prompt": f"say {i}", "reference": f"say {i}", "tags": ["even" if i % 2 == 0 else "odd"]}
        for i in range(count)
    ]
    path = tmp_path / "echo.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "echo.yaml").write_text("name: echo\nversion: 2\nparams: {temperature: 0, max_tokens: 5}\n")
    return load_eval_set(path)


def echo(model: str, messages: Sequence[Mapping[str, Any]]) -> Completion:
    text = str(messages[-1]["content"])
    wrong = text.endswith("3")
    return answer("no" if wrong else text, cost_usd=Decimal("0.0001"), input_tokens=3, output_tokens=2)


async def test_a_run_grades_every_item_and_writes_one_line_each(tmp_path: Path) -> None:
    eval_set = echo_set(tmp_path)
    target = ScriptedCompleter(echo)
    out = tmp_path / "out" / "run.jsonl"
    seen: list[str] = []
    outcome = await Runner(eval_set, target, GraderEnv(), model="m").run(
        out, concurrency=3, on_result=lambda r: seen.append(r.id)
    )
    assert (outcome.ran, outcome.skipped) == (6, 0) and sorted(seen) == [f"q{i}" for i in range(6)]
    assert len(out.read_text().splitlines()) == 6
    assert target.calls[0][2] == {"temperature": 0, "max_tokens": 5}  # the manifest's parameters
    results = read_results(out)
    assert results.items["q3"].passed is False and results.items["q2"].passed is True
    assert results.items["q0"].set_version == "2" and results.items["q0"].cost_usd == Decimal("0.0001")
    summary = summarise(results)
    assert summary.quality.mean == pytest.approx(5 / 6)
    assert summary.by_tag["odd"].mean == pytest.approx(2 / 3) and summary.by_tag["even"].mean == 1.0
    assert summary.cost.per_success_usd == Decimal("0.0001") and summary.input_tokens == 18


async def test_a_rerun_skips_finished_items_and_can_retry_failed_calls(tmp_path: Path) -> None:
    eval_set = echo_set(tmp_path)
    out = tmp_path / "run.jsonl"

    def flaky(model: str, messages: Sequence[Mapping[str, Any]]) -> Completion:
        if str(messages[-1]["content"]).endswith("1"):
            return Completion(text=None, error="HTTP 503: overloaded", status=503)
        return echo(model, messages)

    await Runner(eval_set, ScriptedCompleter(flaky), GraderEnv(), model="m").run(out)
    failed = read_results(out).items["q1"]
    assert failed.error == "HTTP 503: overloaded" and failed.score is None and not failed.passed
    again = ScriptedCompleter(echo)
    outcome = await Runner(eval_set, again, GraderEnv(), model="m").run(out)
    assert (outcome.ran, outcome.skipped, again.calls) == (0, 6, [])
    outcome = await Runner(eval_set, again, GraderEnv(), model="m").run(out, retry_errors=True)
    assert outcome.ran == 1 and [c[1][-1]["content"] for c in again.calls] == ["say 1"]
    assert read_results(out).items["q1"].passed  # the later line wins
    assert len(read_results(out)) == 6


async def test_a_line_cut_off_mid_write_is_run_again(tmp_path: Path) -> None:
    eval_set = echo_set(tmp_path)
    out = tmp_path / "run.jsonl"
    await Runner(eval_set, ScriptedCompleter(echo), GraderEnv(), model="m").run(out)
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:-1]) + lines[-1][:30])  # killed while writing the last line
    assert len(read_results(out)) == 5
    target = ScriptedCompleter(echo)
    outcome = await Runner(eval_set, target, GraderEnv(), model="m").run(out)
    assert outcome.ran == 1 and len(read_results(out)) == 6
    out.write_bytes(b"garbage\n" + out.read_bytes())
    with pytest.raises(ResultsFileError, match=":1: not a result line"):
        read_results(out)


async def test_a_results_file_of_another_model_is_not_resumed(tmp_path: Path) -> None:
    eval_set = echo_set(tmp_path)
    out = tmp_path / "run.jsonl"
    await Runner(eval_set, ScriptedCompleter(echo), GraderEnv(), model="m").run(out)
    with pytest.raises(ResultsFileError, match="choose another --out"):
        await Runner(eval_set, ScriptedCompleter(echo), GraderEnv(), model="other").run(out)


def test_models_and_the_judge_must_exist(tmp_path: Path) -> None:
    eval_set = echo_set(tmp_path)
    check_models(["m", "judge"], "m", eval_set)
    with pytest.raises(GatewayUnusable, match="--model 'x' does not exist"):
        check_models(["m"], "x", eval_set)
    (tmp_path / "echo.yaml").write_text("name: echo\njudge: {model: big-judge}\n")
    with pytest.raises(GatewayUnusable, match="the judge's model 'big-judge' does not exist"):
        check_models(["m"], "m", load_eval_set(tmp_path / "echo.jsonl"))
