from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from margin.cli import main


def test_config_check_prints_masked_config(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "deployments: [{name: a, provider: fake, model: m, api_key: sk-inline-secret}]\n"
        "models: [{name: g, deployments: [a]}]\n"
    )
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "sk-inline-secret" not in result.output
    assert "********" in result.output and "valid (1 deployments, 1 model groups)" in result.output


def test_config_check_reports_bad_key_with_line(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("server:\n  prot: 1\n")
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code != 0
    assert "m.yaml:2: server.prot" in result.output


def test_config_schema_is_json_schema() -> None:
    result = CliRunner().invoke(main, ["config", "schema"])
    schema = json.loads(result.output)
    assert schema["additionalProperties"] is False
    assert "deployments" in schema["properties"]


def test_models_lists_deployments_without_probing(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("deployments: [{name: a, provider: fake, model: m}]\nmodels: [{name: g, deployments: [a]}]\n")
    result = CliRunner().invoke(main, ["models", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert "a" in result.output and "healthy" in result.output
