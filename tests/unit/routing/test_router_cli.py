"""`margin router train`, `eval` and `score` end to end on a tiny synthetic file."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from margin.cli.router import router


def outcomes_file(path: Path) -> Path:
    lines = []
    for i in range(120):
        hard = i % 3 == 0
        prompt = (
            f"Solve 37*{i} + 4096/{i + 1} - sqrt({i * 7}) and explain every step of the derivation."
            if hard
            else f"Say hello to person {i}."
        )
        row = {
            "prompt": prompt,
            "weak_score": 0 if hard else 1,
            "strong_score": 1 if hard or i % 10 else 0,
            "in_tokens_est": len(prompt) // 4,
            "weak_out_tokens_est": 50,
            "strong_out_tokens_est": 60,
            "benchmark": "toy",
            "fold": i % 4 + 1,
        }
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_train_then_eval_with_html(tmp_path: Path) -> None:
    data = outcomes_file(tmp_path / "toy.jsonl")
    model = tmp_path / "toy.model"
    runner = CliRunner()
    trained = runner.invoke(
        router, ["train", str(data), "--out", str(model), "--embedder", "hashing", "--fold", "1", "--fold", "2"]
    )
    assert trained.exit_code == 0, trained.output
    assert "out-of-fold APGR" in trained.output
    report = tmp_path / "report.html"
    evaluated = runner.invoke(
        router, ["eval", str(data), "--model", str(model), "--fold", "3", "--fold", "4", "--html", str(report)]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "APGR" in evaluated.output and "CPT(80%)" in evaluated.output and "random" in evaluated.output
    page = report.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "<svg" not in page  # drawn by Chart.js, not by hand
    assert page.count("<canvas") == 2 and page.count('type="application/json"') == 2
    assert "<script src" not in page and "Chart.js v4.6.2" in page  # the library inline: opens offline
    share, cost = (_spec(page, chart_id) for chart_id in ("pgr-share", "pgr-cost"))
    for spec in (share, cost):
        assert [s["name"] for s in spec["series"]] == ["router", "random"]
        assert [s["dashed"] for s in spec["series"]] == [False, True]
        assert {m["id"] for m in spec["markers"]} == {f"{n}:{p}" for n in ("router", "random") for p in POINTS}
    assert [s["colour"] for s in share["series"]] == [s["colour"] for s in cost["series"]]
    assert share["x"] == {"label": "share of calls to the strong tier", "scale": "linear", "format": "percent",
                          "min": 0, "max": 1, "step": 0.1}  # fmt: skip
    assert cost["x"]["format"] == "usd" and share["y"]["min"] <= 0 and share["y"]["max"] >= 1
    summary = json.loads(
        runner.invoke(router, ["eval", str(data), "--model", str(model), "--fold", "3", "--fold", "4", "--json"]).output
    )
    by_id = {m["id"]: m for m in share["markers"]}
    for point, field in (("cpt50", "cpt50"), ("cpt80", "cpt80"), ("q95", "share_at_95")):
        assert by_id[f"router:{point}"]["x"] == pytest.approx(summary["router"][field])
        assert by_id[f"random:{point}"]["x"] == pytest.approx(summary["random"][field])
        labels = "\n".join(m["label"] for m in share["markers"] if m["id"].startswith("router:"))
        assert f"{summary['router'][field]:.0%} strong" in labels
    assert not any(m["label"] for m in share["markers"] if m["id"].startswith("random:"))
    costs = {m["id"]: m["x"] for m in cost["markers"]}
    assert costs["router:cpt80"] == pytest.approx(summary["router"]["cost_at_cpt80"])
    assert costs["random:q95"] == pytest.approx(summary["random"]["cost_at_95"])
    assert by_id["router:cpt50"]["y"] >= 0.5 - 1e-9 and by_id["router:cpt80"]["y"] >= 0.8 - 1e-9


POINTS = ("cpt50", "cpt80", "q95")


def _spec(page: str, chart_id: str) -> dict[str, Any]:
    found = re.search(f'id="{chart_id}-spec">([^<]*)<', page)
    assert found is not None, chart_id
    spec: dict[str, Any] = json.loads(found.group(1))
    return spec


def test_eval_json_and_prices(tmp_path: Path) -> None:
    data = outcomes_file(tmp_path / "toy.jsonl")
    model = tmp_path / "toy.model"
    runner = CliRunner()
    assert runner.invoke(router, ["train", str(data), "--out", str(model), "--embedder", "none"]).exit_code == 0
    result = runner.invoke(router, ["eval", str(data), "--model", str(model), "--json", "--strong-price", "20", "60"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["random"]["apgr"] == pytest.approx(0.5)
    assert set(payload["router"]) >= {"apgr", "cpt50", "cpt80", "strong_call_reduction_at_95", "cost_at_95"}


def test_errors_are_reported_not_raised(tmp_path: Path) -> None:
    data = outcomes_file(tmp_path / "toy.jsonl")
    runner = CliRunner()
    empty = runner.invoke(router, ["train", str(data), "--out", str(tmp_path / "m"), "--benchmark", "nope"])
    assert empty.exit_code != 0 and "no rows left" in empty.output
    junk = tmp_path / "junk.model"
    junk.write_text("junk", encoding="utf-8")
    bad_model = runner.invoke(router, ["eval", str(data), "--model", str(junk)])
    assert bad_model.exit_code != 0 and "cannot read router model" in bad_model.output


def test_folds_are_whatever_the_file_numbers_and_unknown_ones_are_refused(tmp_path: Path) -> None:
    data = outcomes_file(tmp_path / "toy.jsonl")
    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    zero_based = tmp_path / "zero.jsonl"
    zero_based.write_text("\n".join(json.dumps({**row, "fold": row["fold"] - 1}) for row in rows), encoding="utf-8")
    runner = CliRunner()
    model = tmp_path / "m.npz"
    arguments = ["train", str(zero_based), "--out", str(model), "--embedder", "none"]
    trained = runner.invoke(router, [*arguments, "--fold", "0"])
    assert trained.exit_code == 0, trained.output
    assert "trained" in trained.output and "on 30 prompts" in trained.output
    unknown = runner.invoke(router, ["train", str(zero_based), "--out", str(model), "--fold", "4", "--fold", "9"])
    assert unknown.exit_code != 0
    assert "--fold 4, 9: not in" in unknown.output and "its folds: 0, 1, 2, 3" in unknown.output


def test_score_writes_one_csv_row_per_prompt(tmp_path: Path) -> None:
    data = outcomes_file(tmp_path / "toy.jsonl")
    model = tmp_path / "toy.npz"
    runner = CliRunner()
    assert runner.invoke(router, ["train", str(data), "--out", str(model), "--embedder", "none"]).exit_code == 0
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        router, ["score", str(data), "--model", str(model), "--out", str(out), "--fold", "2", "--strong-share", "0.4"]
    )
    assert result.exit_code == 0, result.output
    with out.open(encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 30 and {row["fold"] for row in table} == {"2"}
    assert list(table[0]) == ["id", "benchmark", "category", "fold", "score", "weak_score", "strong_score", "tier"]
    assert table[0]["benchmark"] == table[0]["category"] == "toy"
    scores = np.array([float(row["score"]) for row in table])
    hard = np.array([row["weak_score"] == "0" for row in table])
    assert scores[hard].min() > scores[~hard].max()  # the model ranks the toy task, and the CSV says so
    strong = {row["tier"] for row, h in zip(table, hard, strict=True) if h}
    assert strong == {"strong"} and "% strong" in result.output
    # The same scores as the library gives: the CSV is the model's own output, not a re-derivation.
    from margin.routing.learned.scorer import load_scorer

    prompts = [json.loads(line)["prompt"] for line in data.read_text(encoding="utf-8").splitlines()][1::4]
    assert np.allclose(scores, load_scorer(model).score(prompts), atol=1e-6)
