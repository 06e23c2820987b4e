"""A run's sampling settings (`--param`): checked, sent on every call over the set's own params,
recorded in every result line, refused when a rerun would mix two settings, shown by compare."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from evals_support import ScriptedCompleter, answer, row, run_of

from margin.cli.evals import eval_group
from margin.config.gates import GatesConfig, QualityGate
from margin.evals.compare import compare_runs
from margin.evals.completion import Completion
from margin.evals.errors import ResultsFileError
from margin.evals.gates import apply_gates
from margin.evals.graders.protocol import GraderEnv
from margin.evals.loader import EvalSet, load_eval_set
from margin.evals.render import render_comparison, render_summary
from margin.evals.results import read_results
from margin.evals.run_params import RunParamError, describe_params, parse_run_params
from margin.evals.runner import Runner
from margin.evals.summary import summarise


def test_pairs_become_checked_numbers() -> None:
    params = parse_run_params(["temperature=1.3", "seed=7", "max_tokens = 32", "top_p=0.9", "seed=8"])
    assert params == {"temperature": 1.3, "seed": 8, "max_tokens": 32, "top_p": 0.9}
    assert isinstance(params["seed"], int) and isinstance(params["temperature"], float)
    assert parse_run_params([]) == {}


@pytest.mark.parametrize(
    ("pair", "says"),
    [
        ("temperature", "expected KEY=VALUE"),
        ("=1", "expected KEY=VALUE"),
        ("temperature=", "expected KEY=VALUE"),
        ("temprature=1", "unknown setting"),
        ("temperature=hot", "must be a number"),
        ("temperature=2.5", "between 0 and 2"),
        ("temperature=nan", "between 0 and 2"),
        ("seed=1.5", "must be an integer"),
        ("seed=-1", "between 0 or more"),
        ("max_tokens=0", "between 1 or more"),
    ],
)
def test_bad_pairs_are_refused_with_the_pair_named(pair: str, says: str) -> None:
    with pytest.raises(RunParamError, match=says) as caught:
        parse_run_params([pair])
    assert pair.split("=")[0].strip() in caught.value.message or "KEY=VALUE" in caught.value.message


def test_describe_params() -> None:
    assert describe_params({"temperature": 0, "max_tokens": 64}) == "max_tokens=64, temperature=0"
    assert describe_params({}) == "-"
    assert describe_params(None) == "not recorded"


def small_set(tmp_path: Path) -> EvalSet:
    path = tmp_path / "small.jsonl"
    own = {"max_tokens": 9, "temperature": 0.5}
    lines = [{"id": "a", "prompt": "1", "reference": "1"}, {"id": "b", "prompt": "2", "reference": "2", "params": own}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "small.yaml").write_text("name: small\nversion: 1\nparams: {temperature: 0, max_tokens: 5}\n")
    return load_eval_set(path)


def echo(model: str, messages: Sequence[Mapping[str, Any]]) -> Completion:
    return answer(str(messages[-1]["content"]))


async def test_overrides_win_on_every_call_and_are_recorded(tmp_path: Path) -> None:
    eval_set = small_set(tmp_path)
    target = ScriptedCompleter(echo)
    out = tmp_path / "hot.jsonl"
    runner = Runner(eval_set, target, GraderEnv(), model="m", overrides={"temperature": 1.3, "seed": 7})
    await runner.run(out, concurrency=1)
    sent = {messages[-1]["content"]: params for _, messages, params in target.calls}
    assert sent["1"] == {"temperature": 1.3, "max_tokens": 5, "seed": 7}
    assert sent["2"] == {"temperature": 1.3, "max_tokens": 9, "seed": 7}  # the item's own max_tokens stays
    results = read_results(out)
    assert {r.id: r.run_params for r in results} == {
        "a": {"temperature": 1.3, "max_tokens": 5, "seed": 7},
        "b": {"temperature": 1.3, "max_tokens": 5, "seed": 7},
    }
    assert "max_tokens=5, seed=7, temperature=1.3" in render_summary(summarise(results))


async def test_a_rerun_with_other_settings_is_refused(tmp_path: Path) -> None:
    eval_set = small_set(tmp_path)
    out = tmp_path / "run.jsonl"
    await Runner(eval_set, ScriptedCompleter(echo), GraderEnv(), model="m").run(out)
    greedy_line = out.read_text().splitlines()[0]
    out.write_text(greedy_line + "\n")  # one item left to do
    hot = Runner(eval_set, ScriptedCompleter(echo), GraderEnv(), model="m", overrides={"temperature": 1.3})
    refused = re.escape("run with max_tokens=5, temperature=0, not max_tokens=5, temperature=1.3")
    with pytest.raises(ResultsFileError, match=refused):
        await hot.run(out)
    resumed = await Runner(eval_set, ScriptedCompleter(echo), GraderEnv(), model="m").run(out)
    assert (resumed.ran, resumed.skipped) == (1, 1)


async def test_a_file_written_before_settings_were_recorded_still_resumes(tmp_path: Path) -> None:
    eval_set = small_set(tmp_path)
    out = tmp_path / "old.jsonl"
    old = row("a", 1.0, set="small", model="m").model_dump(mode="json")
    del old["run_params"]
    out.write_text(json.dumps(old) + "\n")
    outcome = await Runner(eval_set, ScriptedCompleter(echo), GraderEnv(), model="m").run(out)
    assert (outcome.ran, outcome.skipped) == (1, 1)
    assert read_results(out).items["a"].run_params is None


def test_compare_shows_each_sides_settings(tmp_path: Path) -> None:
    greedy = run_of([row(f"i{n}", 1.0, run_params={"temperature": 0}) for n in range(4)], "greedy.jsonl")
    hot = run_of([row(f"i{n}", 1.0, run_params={"temperature": 1.3, "seed": 7}) for n in range(4)], "hot.jsonl")
    comparison = compare_runs(greedy, hot)
    verdict = apply_gates(comparison, GatesConfig(quality=QualityGate()))
    text = render_comparison(comparison, verdict, "markdown", ("greedy.jsonl", "hot.jsonl"))
    assert "| settings | temperature=0 | seed=7, temperature=1.3 |" in text
    as_json = json.loads(render_comparison(comparison, verdict, "json", ("greedy.jsonl", "hot.jsonl")))
    assert as_json["candidate"]["run_params"] == {"temperature": 1.3, "seed": 7}


def test_the_cli_refuses_a_bad_param_before_any_call(tmp_path: Path) -> None:
    small_set(tmp_path)
    args = ["run", str(tmp_path / "small.jsonl"), "--model", "m", "--url", "http://127.0.0.1:9"]
    outcome = CliRunner().invoke(eval_group, [*args, "--param", "temperature=9"])
    assert outcome.exit_code == 2
    assert "--param temperature=9: temperature must be between 0 and 2" in outcome.output
    assert "cannot be reached" not in outcome.output
