"""Renderers and the CLI: every format, live XLSX formulas, offline HTML."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from planner_helpers import BASE
from xlsxwriter.utility import xl_cell_to_rowcol, xl_col_to_name

from margin.charts import asset_names
from margin.cli.plan import plan as plan_command
from margin.planner import Catalog, Profile, plan
from margin.planner.render import render
from margin.planner.render.chart_specs import plan_palette
from margin.planner.render.featured import cost_of, featured_ids

PROFILE = {
    **BASE,
    "name": "render test",
    "requests_per_day": 200000,
    "peak_to_average": 2.0,
    "candidates": {
        "apis": ["openai/gpt-4.1-mini", "together/qwen2.5-7b-instruct-turbo"],
        "models": ["llama-3.1-8b"],
        "gpus": ["l4", "h100"],
        "precisions": ["fp8"],
        "compare_to": "openai/gpt-4.1-mini",
    },
    "hybrid": {
        "cache_hit_rate": 0.2,
        "premium_api": "openai/gpt-4.1-mini",
        "tiers": [
            {"name": "small", "option": "self_hosted:llama-3.1-8b", "share": 0.6},
            {"name": "premium", "option": "api:openai/gpt-4.1-mini", "share": 0.4},
        ],
    },
}


@pytest.fixture(scope="module")
def result(catalog: Catalog) -> object:
    return plan(Profile.model_validate(PROFILE), catalog)


def test_table_names_recommendation_and_sensitivity(result: object) -> None:
    text = render(result, "table")  # type: ignore[arg-type]
    assert isinstance(text, str)
    assert "Recommendation:" in text and "Sensitivity" in text and "Hybrid tier mix" in text


def test_json_money_is_exact_strings(result: object) -> None:
    doc = json.loads(render(result, "json"))  # type: ignore[arg-type]
    option = next(o for o in doc["classes"][0]["scenarios"][0]["options"] if o["feasible"])
    assert isinstance(option["total"], str) and re.fullmatch(r"-?\d+(\.\d+)?", option["total"])
    assert doc["sources"]["costmeter"]["date"] == "2026-06"


def test_csv_has_a_row_per_option_and_scenario(result: object) -> None:
    rows = list(csv.DictReader(io.StringIO(render(result, "csv"))))  # type: ignore[arg-type]
    cp = result.classes[0]  # type: ignore[attr-defined]
    assert len(rows) == len(cp.scenarios) * len(cp.scenarios[0].costs)
    assert {"line: GPU instances", "line: on-call"} <= set(rows[0])


def test_xlsx_results_are_formulas_over_assumptions(result: object) -> None:
    pytest.importorskip("xlsxwriter")
    data = render(result, "xlsx")  # type: ignore[arg-type]
    assert isinstance(data, bytes)
    book = zipfile.ZipFile(io.BytesIO(data))
    names = book.read("xl/workbook.xml").decode()
    assert all(s in names for s in ("Assumptions", "Hours", "Results", "Curve"))
    results = book.read("xl/worksheets/sheet3.xml").decode()
    formulas = re.findall(r"<f>([^<]*)</f>", results)
    assert len(formulas) > 50
    assert any("Assumptions" in f and "engineer_monthly" not in f for f in formulas)
    assert any(f.startswith("G") and "+H" in f for f in formulas)  # total = GPU + hidden + other
    curve = book.read("xl/worksheets/sheet4.xml").decode()
    assert "SUMPRODUCT(ROUNDUP(" in curve and "MATCH(1,INDEX(" in curve


def cells_with_formulas(sheet_xml: str) -> set[str]:
    return set(re.findall(r'<c r="([A-Z]+\d+)"[^>]*><f>', sheet_xml))


def cells_of(reference: str) -> tuple[str, list[str]]:
    """'Sheet'!$C$2:$E$2 -> ("Sheet", ["C2", "D2", "E2"]) (one row or one column)."""
    sheet, span = reference.split("!")
    first, last = span.replace("$", "").split(":")
    (c1, r1), (c2, r2) = (re.fullmatch(r"([A-Z]+)(\d+)", cell).groups() for cell in (first, last))  # type: ignore[union-attr]
    if r1 == r2:
        return sheet.strip("'"), [f"{xl_col_to_name(c)}{r1}" for c in range(col(c1), col(c2) + 1)]
    return sheet.strip("'"), [f"{c1}{r}" for r in range(int(r1), int(r2) + 1)]


def col(letters: str) -> int:
    return xl_cell_to_rowcol(f"{letters}1")[1]


def test_xlsx_charts_are_native_and_plot_the_live_formulas(result: object) -> None:
    pytest.importorskip("xlsxwriter")
    book = zipfile.ZipFile(io.BytesIO(render(result, "xlsx")))  # type: ignore[arg-type]
    assert '<sheet name="Charts"' in book.read("xl/workbook.xml").decode()
    sheets = {name: book.read(f"xl/worksheets/sheet{i}.xml").decode()
              for i, name in enumerate(("Assumptions", "Hours", "Results", "Curve", "Charts"), start=1)}  # fmt: skip
    formulas = {name: cells_with_formulas(xml) for name, xml in sheets.items()}
    charts = sorted(n for n in book.namelist() if re.fullmatch(r"xl/charts/chart\d+\.xml", n))
    assert len(charts) == 2 * len(result.classes)  # type: ignore[attr-defined]  # cost curve + totals per class
    cp = result.classes[0]  # type: ignore[attr-defined]
    labels = [cost_of(cp.scenarios[0], i).label for i in featured_ids(cp)]
    palette = plan_palette(result)  # type: ignore[arg-type]
    cost, totals = (book.read(n).decode() for n in charts[:2])
    for chart, kind in ((cost, "scatterChart"), (totals, "barChart")):
        assert f"<c:{kind}>" in chart
        names = re.findall(r"<c:tx><c:v>([^<]*)</c:v></c:tx>", chart)
        assert names[: len(labels)] == labels  # every option the report lists
        for series in re.findall(r"<c:ser>.*?</c:ser>", chart)[: len(labels)]:
            name = re.search(r"<c:v>([^<]*)</c:v>", series).group(1)  # type: ignore[union-attr]
            assert f'<a:srgbClr val="{palette[name].lstrip("#")}"/>' in series, name  # the HTML report's colour
        for reference in re.findall(r"<c:(?:val|xVal|yVal)><c:numRef><c:f>([^<]*)</c:f>", chart):
            sheet, cells = cells_of(reference)
            assert set(cells) <= formulas[sheet], reference  # the chart plots live formulas (growth labels aside)
    assert "today: " in cost and "crossovers" in cost and "'Curve'!" in cost and "'Results'!$J$" in totals
    assert cost.count('<c:logBase val="10"/>') == 2


def chart_specs(page: str) -> dict[str, dict[str, object]]:
    found = re.findall(r'<script type="application/json" id="([^"]+)-spec">([^<]*)</script>', page)
    return {chart_id: json.loads(data) for chart_id, data in found}


def test_html_is_self_contained_with_every_option_charted(result: object) -> None:
    page = render(result, "html")  # type: ignore[arg-type]
    assert isinstance(page, str)
    assert "<link" not in page and " src=" not in page and " href=" not in page  # nothing fetched
    assert page.count("<script>") == len(asset_names())  # Chart.js, its annotation plugin, the renderer: inline
    specs = chart_specs(page)
    assert sorted(specs) == ["class-0-cost", "class-0-savings", "class-0-utilisation"]
    cp = result.classes[0]  # type: ignore[attr-defined]
    labels = [cost_of(cp.scenarios[0], i).label for i in featured_ids(cp)]
    colours: dict[str, str] = {}
    for spec in specs.values():
        for series in spec["series"]:  # type: ignore[attr-defined]
            assert colours.setdefault(series["name"], series["colour"]) == series["colour"], series["name"]
    cost, utilisation = specs["class-0-cost"], specs["class-0-utilisation"]
    assert [s["name"] for s in cost["series"]] == labels  # type: ignore[attr-defined]
    assert [s["name"] for s in utilisation["series"]] == labels  # type: ignore[attr-defined]
    assert len(set(colours.values())) == len(colours)  # no two names share a colour
    markers = {m["id"]: m for m in cost["markers"]}  # type: ignore[attr-defined]
    assert markers["today"]["x"] == cp.scenarios[0].demand.requests_per_day and "y" not in markers["today"]
    crossing = [c for c in cp.crossovers if c.requests_per_day is not None and c.option_id in featured_ids(cp)]
    assert crossing and {f"crossover:{c.option_id}" for c in crossing} <= set(markers)
    for c in crossing:
        assert markers[f"crossover:{c.option_id}"]["x"] == c.requests_per_day
    assert cost["x"]["min"] <= cp.scenarios[0].demand.requests_per_day <= cost["x"]["max"]  # type: ignore[index]
    assert utilisation["x"] == {"label": "replica utilisation", "scale": "linear", "format": "percent",
                                "min": 0, "max": 1, "step": 0.1}  # fmt: skip
    assert "tier-mix savings" in specs["class-0-savings"]["title"]  # type: ignore[operator]


def test_cli_writes_each_format(tmp_path: Path) -> None:
    profile_path = tmp_path / "profile.yaml"
    profile_path.write_text(yaml.safe_dump(PROFILE))
    runner = CliRunner()
    table = runner.invoke(plan_command, [str(profile_path)])
    assert table.exit_code == 0, table.output
    assert "margin plan: render test" in table.output
    out = tmp_path / "plan.html"
    assert runner.invoke(plan_command, [str(profile_path), "--format", "html", "--out", str(out)]).exit_code == 0
    assert out.read_text().startswith("<!doctype html>")
    no_out = runner.invoke(plan_command, [str(profile_path), "--format", "xlsx"])
    assert no_out.exit_code != 0 and "--out" in no_out.output
    for fmt in ("json", "csv"):
        done = runner.invoke(plan_command, [str(profile_path), "--format", fmt])
        assert done.exit_code == 0 and "api:" in done.output, (fmt, done.output)
    stray = runner.invoke(plan_command, [str(profile_path), "--model-group", "chat"])
    assert stray.exit_code != 0 and "use it with --from-ledger" in stray.output
    env = {"MARGIN_DATA_DIR": str(tmp_path / "data")}  # a fresh data directory: an empty ledger
    empty = runner.invoke(plan_command, [str(profile_path), "--from-ledger"], env=env)
    assert empty.exit_code != 0 and "no requests in the ledger" in empty.output
