"""`margin tune dataset build` with no --url: the teacher is asked through an in-process margin built
from --config (the in-process fake provider as the teacher), every call a ledger row of that
margin's SQLite ledger tagged `tuning` at class batch; show and export read the result back."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from margin.cli.tune import tune


def test_in_process_teacher_calls_are_tagged_tuning(tmp_path: Path) -> None:
    (tmp_path / "margin.yaml").write_text(
        f"data_dir: {tmp_path}\n"
        "deployments:\n"
        "  - {name: teacher, provider: fake, model: t, price: {input: '3', output: '3'},\n"
        "     fake: {content: 'ROUTE: billing'}}\n"
        "models: [{name: premium, deployments: [teacher]}]\n"
        "tuning: {min_examples: 5}\n"
    )  # fmt: skip
    prompts = tmp_path / "prompts.jsonl"
    topics = ["refund", "login", "parcel", "invoice", "modem", "screen", "voucher", "router", "battery", "cable"]
    prompts.write_text(
        "".join(json.dumps({"prompt": f"ticket {i}: my {t} is broken"}) + "\n" for i, t in enumerate(topics))
    )
    runner = CliRunner()
    args = ["dataset", "build", "--name", "tickets", "--from-prompts", str(prompts), "--teacher", "premium",
            "--config", str(tmp_path / "margin.yaml")]  # fmt: skip
    built = runner.invoke(tune, args)
    assert built.exit_code == 0, built.output
    manifest = json.loads(built.output[built.output.index("{") :])
    assert manifest["teacher_calls"] == 10 and sum(manifest["counts"].values()) == 10
    with sqlite3.connect(tmp_path / "margin.db") as conn:
        rows = conn.execute("SELECT tags, endpoint_class, deployment, cost_total FROM ledger_attempts").fetchall()
    assert len(rows) == 10 and all(
        json.loads(t) == ["tuning"] and c == "batch" and d == "teacher" for t, c, d, _ in rows
    )
    exported = runner.invoke(tune, ["dataset", "export", "tickets", "--config", str(tmp_path / "margin.yaml")])
    examples = [json.loads(line) for line in exported.output.splitlines()]
    assert len(examples) == 10 and {e["messages"][-1]["content"] for e in examples} == {"ROUTE: billing"}
    shown = runner.invoke(tune, ["dataset", "show", "tickets", "--config", str(tmp_path / "margin.yaml")])
    assert json.loads(shown.output)["teacher"] == "premium"


def test_a_spent_tuning_budget_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "margin.yaml").write_text(
        f"data_dir: {tmp_path}\n"
        "deployments:\n"
        "  - {name: teacher, provider: fake, model: t, price: {input: '3', output: '3'}}\n"
        "models: [{name: premium, deployments: [teacher]}]\n"
        "tuning: {min_examples: 5}\n"
        "budgets: [{scope: 'tag:tuning', limit_usd: '0.000001', window: month}]\n"
    )  # fmt: skip
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question number {i} about {i * 17}"}) + "\n" for i in range(8)))
    args = ["dataset", "build", "--name", "spent", "--from-prompts", str(prompts), "--teacher", "premium",
            "--config", str(tmp_path / "margin.yaml")]  # fmt: skip
    built = CliRunner().invoke(tune, args)
    assert built.exit_code == 1
    assert "8 teacher calls failed, the first: HTTP 402: Budget" in built.output and "tag:tuning" in built.output
    assert "nothing was written" in built.output and not (tmp_path / "tuning" / "datasets" / "spent").exists()
