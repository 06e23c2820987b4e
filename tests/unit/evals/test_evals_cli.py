"""`margin eval compare|summary` on results files: formats, exit status, gates from a config."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from click.testing import CliRunner
from evals_support import row

from margin.cli.evals import eval_group
from margin.evals import stats


def results(tmp_path: Path, name: str, wrong: int, n: int = 50) -> Path:
    path = tmp_path / name
    path.write_text(
        "".join(row(f"q{i}", 0.0 if i < wrong else 1.0, model=name).model_dump_json() + "\n" for i in range(n))
    )
    return path


def invoke(*args: str | Path) -> tuple[int, str]:
    outcome = CliRunner().invoke(eval_group, [str(a) for a in args])
    return outcome.exit_code, outcome.output


def test_compare_exits_1_when_a_gate_fails_and_0_when_all_pass(tmp_path: Path) -> None:
    base, worse, same = results(tmp_path, "base", 0), results(tmp_path, "worse", 10), results(tmp_path, "same", 0)
    code, out = invoke("compare", base, worse)
    assert code == 1 and "verdict: FAIL" in out and "quality   FAIL" in out
    code, out = invoke("compare", base, same)
    assert code == 0 and "verdict: PASS" in out


def test_junit_and_json_reports(tmp_path: Path) -> None:
    base, worse = results(tmp_path, "base", 0), results(tmp_path, "worse", 10)
    code, out = invoke("compare", base, worse, "--format", "junit")
    suite = ElementTree.fromstring(out.encode()).find("testsuite")
    assert code == 1 and suite is not None and suite.get("failures") == "1"
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed == ["quality"]
    code, out = invoke("compare", base, worse, "--format", "json")
    report = json.loads(out)
    assert report["verdict"]["passed"] is False and len(report["paired"]["losses"]) == 10
    assert report["paired"]["mcnemar"]["only_baseline"] == 10
    code, out = invoke("compare", base, worse, "--format", "markdown", "--max-drop", "0.5")
    assert code == 0 and out.startswith("### s:") and "| quality | pass |" in out


def test_gates_from_a_config_group(tmp_path: Path) -> None:
    config = tmp_path / "margin.yaml"
    config.write_text(
        "deployments: [{name: a, provider: fake, model: f}]\n"
        "models:\n"
        "  - {name: chat, deployments: [a], gates: {quality: {max_drop: 0.4}, p95_latency_ms: 50}}\n"
        "  - {name: plain, deployments: [a]}\n"
    )
    base, worse = results(tmp_path, "base", 0), results(tmp_path, "worse", 10)
    code, out = invoke("compare", base, worse, "--gates-from", config, "--model-group", "chat")
    assert code == 1 and "p95_latency_ms  FAIL" in out and "quality         pass" in out
    code, out = invoke("compare", base, worse, "--gates-from", config, "--model-group", "nope")
    assert code == 2 and "no model group 'nope' (groups: chat, plain)" in out
    code, out = invoke("compare", base, worse, "--gates-from", config, "--model-group", "plain")
    assert code == 2 and "has no `gates:` section" in out
    code, out = invoke("compare", base, worse, "--gates-from", config)
    assert code == 2 and "needs --model-group" in out


def test_compare_without_scipy_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats, "scipy_available", lambda: False)
    monkeypatch.setattr("margin.cli.eval_compare.scipy_available", lambda: False)
    code, out = invoke("compare", results(tmp_path, "a", 0), results(tmp_path, "b", 0))
    assert code == 2 and "pip install 'margin[evals]'" in out and "Traceback" not in out


def test_summary_formats(tmp_path: Path) -> None:
    path = results(tmp_path, "base", 5, n=20)
    code, out = invoke("summary", path)
    assert code == 0 and "quality (mean, 95% CI)       0.750" in out
    code, out = invoke("summary", path, "--format", "json")
    assert code == 0 and json.loads(out)["quality"]["mean"] == 0.75


def test_run_reports_a_malformed_set_with_its_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "x", "wieght": 2}\n')
    code, out = invoke("run", bad, "--model", "m", "--url", "http://127.0.0.1:9")
    assert code == 2 and f"{bad}:1: wieght: Extra inputs are not permitted" in out


def test_sets_lists_the_packaged_set() -> None:
    code, out = invoke("sets")
    assert code == 0 and out.startswith("margin-basics  v1  42 items")


def test_run_takes_a_config_only_in_process(tmp_path: Path) -> None:
    config = tmp_path / "margin.yaml"
    config.write_text("deployments: []\n")
    code, out = invoke("run", "margin-basics", "--model", "m", "--url", "http://127.0.0.1:9", "--config", config)
    assert code == 2 and "--config builds margin in-process" in out
