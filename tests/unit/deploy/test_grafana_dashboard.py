"""deploy/grafana/margin.json: every query reads series margin serves or recording rules that
deploy/prometheus/margin-rules.yml defines, through the dashboard's datasource variable, on a grid
where no two panels overlap; the provisioning file names a folder the docs tell you to use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.metric_names import names_in, served_series_names

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
RECORDING_RULE = re.compile(r"\bmargin:[a-z0-9_:]+")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana" / "margin.json").read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def queries() -> list[str]:
    return [str(target["expr"]) for panel in panels() for target in panel["targets"]]


def test_every_query_reads_series_margin_serves(tmp_path: Path) -> None:
    served = served_series_names(tmp_path)
    read = set().union(*map(names_in, queries()))
    assert len(read) >= 20, sorted(read)  # the dashboard covers spend, traffic, latency, cache, ledger
    assert read <= served, f"not served by margin: {sorted(read - served)}"


def test_recording_rules_it_reads_are_defined() -> None:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "margin-rules.yml").read_text())["groups"]
    recorded = {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}
    read = {name for query in queries() for name in RECORDING_RULE.findall(query)}
    assert read and read <= recorded, f"undefined recording rules: {sorted(read - recorded)}"


def test_every_panel_uses_the_datasource_variable_and_a_unique_id() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["datasource"] == panel["datasource"] for t in panel["targets"])


def test_panels_sit_on_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard()["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_provisioning_points_at_a_dashboard_folder() -> None:
    provisioning = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "margin.yml").read_text())
    (provider,) = provisioning["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
