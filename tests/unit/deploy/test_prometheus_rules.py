"""deploy/prometheus/: the rules load in promtool, their unit tests pass (each alert fires on the
traffic that should page and stays quiet beside it), and every series they read is one margin serves."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.metric_names import names_in, require_binary, served_series_names

RULES_DIR = Path(__file__).resolve().parents[3] / "deploy" / "prometheus"
RULES = RULES_DIR / "margin-rules.yml"
REQUIRED_ALERTS = {
    "MarginBudgetBurnFast", "MarginBudgetBurnSlow", "MarginHighErrorRate", "MarginHighLatencyP95",
    "MarginCircuitOpen", "MarginUnknownPrices", "MarginLedgerSpillBacklog", "MarginCacheBypassSpike",
}  # fmt: skip


def rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    checked = subprocess.run(
        [require_binary("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_promtool_unit_tests_pass() -> None:
    tested = subprocess.run(
        [require_binary("promtool"), "test", "rules", "margin-rules.test.yml"],
        cwd=RULES_DIR, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_required_alert_exists_with_a_runbook_and_a_test() -> None:
    alerts = {str(rule["alert"]): rule for rule in rules() if "alert" in rule}
    assert alerts.keys() >= REQUIRED_ALERTS
    unit_tests = (RULES_DIR / "margin-rules.test.yml").read_text()
    for name, rule in alerts.items():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict) and annotations.get("runbook"), name
        assert f"alertname: {name}\n" in unit_tests, f"{name} has no promtool unit test"


def test_the_rules_read_only_series_margin_serves(tmp_path: Path) -> None:
    served = served_series_names(tmp_path)
    read = set().union(*(names_in(str(rule["expr"])) for rule in rules()))
    assert read, "the rules read no margin series"
    assert read <= served, f"not served by margin: {sorted(read - served)}"
