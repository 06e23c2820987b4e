"""The learned router's HTML report in a real browser (issue 20 item 8): the installed `margin router
train` and `margin router eval --html` write one file, headless Chromium opens it from disk with
nothing else to reach (no console error, no request but the file itself), and both charts were drawn
by the inlined Chart.js: one line for the router and one for the random baseline, in the same two
colours in both charts, legends whole, readable ticks, and each line's operating points (CPT(50%),
CPT(80%), 95% quality) marked where the printed summary puts them; a click on the baseline's legend
entry hides it and its marks only. Screenshots of the page and of each chart go to the test's temp
dir."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from tests.e2e.test_planner_browser import click_legend_entry, screenshot_chart
from tests.support.chromium import chromium_page
from tests.support.cli import run_margin

CHARTS = """JSON.stringify(Object.fromEntries(Object.entries(window.marginCharts || {}).map(([id, c]) => [id, {
  datasets: c.data.datasets.map(d => ({label: d.label, colour: d.borderColor, points: d.data.length})),
  legend: c.legend.legendItems.map(i => i.text),
  legendInside: c.legend.legendHitBoxes.every(b => b.left >= 0 && b.left + b.width <= c.width),
  x: {min: c.scales.x.min, max: c.scales.x.max, labels: c.scales.x.ticks.map(t => t.label)},
  y: {min: c.scales.y.min, max: c.scales.y.max, labels: c.scales.y.ticks.map(t => t.label)},
  painted: c.ctx.getImageData(0, 0, c.canvas.width, c.canvas.height).data.some((v, i) => i % 4 === 3 && v > 0),
}])))"""
# Each point marker as drawn: its data coordinates, whether it is shown, and whether its centre lies
# inside the plot area.
MARKERS = """JSON.stringify(Object.fromEntries(Object.keys(window.marginCharts).map(id => {
  const c = window.marginCharts[id], a = c.chartArea;
  return [id, Object.fromEntries(Chart.registry.getPlugin('annotation').getAnnotations(c)
    .filter(e => e.options.type === 'point').map(e => [e.options.id, {
      x: e.options.xValue, y: e.options.yValue, shown: e.options.display !== false,
      inside: e.x >= a.left - 1 && e.x <= a.right + 1 && e.y >= a.top - 1 && e.y <= a.bottom + 1}]))];
})))"""
OPERATING = {"cpt50": "cpt50", "cpt80": "cpt80", "q95": "share_at_95"}
COSTS = {"cpt50": "cost_at_cpt50", "cpt80": "cost_at_cpt80", "q95": "cost_at_95"}
NUMBER = re.compile(r"^-?\d+(\.\d)?$")  # a PGR tick: 0, 0.1, ... 1
USD = re.compile(r"^\$\d[\d.,]*[KM]?$")


def outcomes_file(path: Path) -> Path:
    """400 prompts: long arithmetic ones the cheap tier fails, greetings it answers; every seventh
    greeting goes wrong on both tiers, so the router's curve is good but not perfect."""
    lines = []
    for i in range(400):
        hard = i % 3 == 0
        prompt = (
            f"Solve 37*{i} + 4096/{i + 1} - sqrt({i * 7}) and explain every step of the derivation."
            if hard
            else f"Say hello to person {i}."
        )
        row = {
            "prompt": prompt, "weak_score": 0 if hard or i % 11 == 0 else 1, "strong_score": 0 if i % 7 == 0 else 1,
            "in_tokens_est": len(prompt) // 4, "weak_out_tokens_est": 50, "strong_out_tokens_est": 60,
            "benchmark": "toy", "fold": i % 4 + 1,
        }  # fmt: skip
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_the_router_report_draws_both_curves_offline_in_chromium(tmp_path: Path) -> None:
    data, model, report = outcomes_file(tmp_path / "toy.jsonl"), tmp_path / "toy.npz", tmp_path / "eval.html"
    trained = run_margin("router", "train", data, "--out", model, "--embedder", "hashing", "--fold", "1", "--fold",
                         "2", data_dir=tmp_path / "data")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    held_out = ("--fold", "3", "--fold", "4")
    done = run_margin("router", "eval", data, "--model", model, *held_out, "--html", report, data_dir=tmp_path / "data")
    assert done.returncode == 0, done.stderr
    summary = json.loads(run_margin("router", "eval", data, "--model", model, *held_out, "--json",
                                    data_dir=tmp_path / "data").stdout)  # fmt: skip

    async def browse() -> tuple[dict[str, Any], dict[str, Any], bool, dict[str, Any], list[str], list[str]]:
        async with chromium_page(tmp_path / "profile") as page:
            await page.navigate(report.as_uri())
            charts = json.loads(await page.evaluate(CHARTS))
            markers = json.loads(await page.evaluate(MARKERS))
            await page.screenshot(tmp_path / "eval.png")
            for chart_id in charts:
                await screenshot_chart(page, chart_id, tmp_path / f"{chart_id}.png")
            hidden = await click_legend_entry(page, "pgr-share", 1)
            after = json.loads(await page.evaluate(MARKERS))["pgr-share"]
            return charts, markers, hidden, after, page.requests, page.errors

    charts, markers, hidden, after, requests, errors = asyncio.run(browse())
    assert errors == [], errors
    assert requests == [report.as_uri()], requests  # the one file: no script, font or image fetched
    assert sorted(charts) == ["pgr-cost", "pgr-share"]
    colours = {d["label"]: d["colour"] for d in charts["pgr-share"]["datasets"]}
    assert list(colours) == ["router", "random"] and len(set(colours.values())) == 2
    for chart_id, chart in charts.items():
        assert chart["painted"] and chart["legendInside"], chart_id
        assert [d["label"] for d in chart["datasets"]] == chart["legend"] == ["router", "random"], chart_id
        assert {d["label"]: d["colour"] for d in chart["datasets"]} == colours, chart_id
        assert all(d["points"] > 10 for d in chart["datasets"]), chart_id
        assert chart["y"]["min"] <= 0 and chart["y"]["max"] >= 1
        assert all(NUMBER.match(label) for label in chart["y"]["labels"]), chart["y"]["labels"]
    assert charts["pgr-share"]["x"]["labels"] == [f"{p}%" for p in range(0, 101, 10)]
    assert all(USD.match(label) for label in charts["pgr-cost"]["x"]["labels"]), charts["pgr-cost"]["x"]["labels"]
    for chart_id, x_of in (("pgr-share", OPERATING), ("pgr-cost", COSTS)):
        drawn = markers[chart_id]
        assert sorted(drawn) == sorted(f"{line}:{p}" for line in ("router", "random") for p in OPERATING), chart_id
        for marker_id, marker in drawn.items():
            line, point = marker_id.split(":")
            assert marker["shown"] and marker["inside"], (chart_id, marker_id)
            assert abs(marker["x"] - summary[line][x_of[point]]) < 1e-9, (chart_id, marker_id)
    assert hidden, "a click on the random baseline's legend entry hides its line"
    assert {i for i, m in after.items() if not m["shown"]} == {f"random:{p}" for p in OPERATING}
    for name in ("eval.png", "pgr-share.png", "pgr-cost.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG"), name
