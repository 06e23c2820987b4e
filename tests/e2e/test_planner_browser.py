"""The planner's HTML report in a real browser (issue 20 item 8): the installed `margin plan` writes one
file, headless Chromium opens it from disk with nothing else to reach (no console error, no request
but the file itself), and every chart was drawn by the inlined Chart.js: one line per option the
report's table lists, each legend entry whole and inside the chart, one colour per option in every
chart, today's demand and each crossover marked, a utilisation axis from 0% to 100%, log axes labelled
at 1, 2 and 5 x 10^n only, and a click on a legend entry hides that option's line. Screenshots of the
page and of each chart are written to the test's temp dir."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.support.chromium import Page, chromium_page
from tests.support.cli import run_margin

PROFILE = {
    "name": "browser check",
    "requests_per_day": 50000,
    "input_tokens": {"mean": 500, "p95": 1000},
    "output_tokens": {"mean": 250, "p95": 500},
    "peak_to_average": 2.5,
    "growth": [1, 5, 10],
    "sla": {"ttft_ms": 1000, "p95_ms": 30000},
    "ops_capacity": "dedicated",
    "classes": [
        {"name": "chat", "kind": "interactive", "share": 0.8},
        {"name": "nightly", "kind": "batch", "share": 0.2},
    ],
    "candidates": {"compare_to": "openai/gpt-4.1-mini"},  # the whole catalog otherwise: many options
    "hybrid": {
        "cache_hit_rate": 0.2,
        "premium_api": "openai/gpt-4.1-mini",
        "tiers": [
            {"name": "small", "option": "self_hosted:llama-3.1-8b", "share": 0.6},
            {"name": "premium", "option": "api:openai/gpt-4.1-mini", "share": 0.4},
        ],
    },
}
CHARTS = """JSON.stringify(Object.fromEntries(Object.entries(window.marginCharts || {}).map(([id, c]) => [id, {
  datasets: c.data.datasets.map(d => ({label: d.label, colour: d.borderColor})),
  legend: c.legend.legendItems.map(i => i.text),
  legendInside: c.legend.legendHitBoxes.every(b => b.left >= 0 && b.left + b.width <= c.width),
  annotations: Object.keys(c.options.plugins.annotation.annotations),
  today: (c.options.plugins.annotation.annotations.today || {}).value,
  x: {type: c.scales.x.type, min: c.scales.x.min, max: c.scales.x.max, labels: c.scales.x.ticks.map(t => t.label)},
  y: {type: c.scales.y.type, labels: c.scales.y.ticks.map(t => t.label)},
  painted: c.ctx.getImageData(0, 0, c.canvas.width, c.canvas.height).data.some((v, i) => i % 4 === 3 && v > 0),
}])))"""
# The options table of each class (first column: the option's label; last: its crossover).
TABLES = """JSON.stringify([...document.querySelectorAll('h2 + p ~ table, h2 ~ table')].filter(
  t => t.rows[0].cells[0].textContent === 'option').map(t => [...t.rows].slice(1).map(
  r => [r.cells[0].textContent, r.cells[r.cells.length - 1].textContent])))"""
# The centre of a legend entry in viewport coordinates, once the chart is scrolled into view and laid out.
LEGEND_ENTRY = """new Promise(done => { const c = window.marginCharts[CHART]; c.canvas.scrollIntoView();
  requestAnimationFrame(() => requestAnimationFrame(() => {
    const r = c.canvas.getBoundingClientRect(), b = c.legend.legendHitBoxes[INDEX];
    done(JSON.stringify({x: r.left + b.left + b.width / 2, y: r.top + b.top + b.height / 2})); })); })"""
# The legend index of the first option with a crossover marker on a chart.
CROSSING_OPTION = """(() => { const spec = JSON.parse(document.getElementById(CHART + '-spec').textContent);
  const marker = spec.markers.find(m => m.kind === 'crossover' && m.series);
  return spec.series.findIndex(s => s.name === marker.series); })()"""
# Whether each marker of the chart is shown now: {id: shown}.
MARKERS_SHOWN = """JSON.stringify(Object.fromEntries(Chart.registry.getPlugin('annotation')
  .getAnnotations(window.marginCharts[CHART]).map(e => [e.options.id, e.options.display])))"""
Clicked = tuple[bool, str, dict[str, bool]]  # hidden by the click, that option's label, each marker shown
LOG_LABEL = re.compile(r"^\$?(1|2|5)(0*)(K|M|B)?$|^\$?0\.0*(1|2|5)$")


async def click_legend_entry(page: Page, chart_id: str, index: int) -> bool:
    """A real mouse click on a legend entry; answers whether the dataset is then hidden."""
    where = LEGEND_ENTRY.replace("CHART", json.dumps(chart_id)).replace("INDEX", str(index))
    box = json.loads(await page.evaluate(where))
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        await page.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)
    visible = f"window.marginCharts[{json.dumps(chart_id)}].isDatasetVisible({index})"
    for _ in range(50):  # Chart.js handles pointer events on the next animation frame
        if not await page.evaluate(visible):
            return True
        await asyncio.sleep(0.05)
    return False


async def screenshot_chart(page: Page, chart_id: str, path: Path) -> None:
    """The chart alone (the clip is in page coordinates: the viewport's plus the scroll)."""
    rect = json.loads(await page.evaluate(
        f"JSON.stringify(document.getElementById({json.dumps(chart_id)}).getBoundingClientRect().toJSON())"
    ))  # fmt: skip
    x, y = await page.evaluate("scrollX"), await page.evaluate("scrollY")
    clip = {"x": rect["x"] + x, "y": rect["y"] + y, "width": rect["width"], "height": rect["height"], "scale": 1}
    shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
    path.write_bytes(base64.b64decode(shot["data"]))


def test_the_plan_report_draws_every_option_offline_in_chromium(tmp_path: Path) -> None:
    profile, report = tmp_path / "profile.yaml", tmp_path / "plan.html"
    profile.write_text(yaml.safe_dump(PROFILE))
    done = run_margin("plan", profile, "--format", "html", "--out", report, data_dir=tmp_path / "data")
    assert done.returncode == 0, done.stderr

    async def browse() -> tuple[dict[str, Any], list[list[list[str]]], Clicked, list[str], list[str]]:
        async with chromium_page(tmp_path / "profile") as page:
            await page.navigate(report.as_uri())
            charts = json.loads(await page.evaluate(CHARTS))
            tables = json.loads(await page.evaluate(TABLES))
            option = await page.evaluate(CROSSING_OPTION.replace("CHART", '"class-0-cost"'))
            hidden = await click_legend_entry(page, "class-0-cost", option)
            shown = json.loads(await page.evaluate(MARKERS_SHOWN.replace("CHART", '"class-0-cost"')))
            hidden_name = charts["class-0-cost"]["datasets"][option]["label"]
            await page.screenshot(tmp_path / "plan.png")
            for chart_id in charts:
                await screenshot_chart(page, chart_id, tmp_path / f"{chart_id}.png")
            return charts, tables, (hidden, hidden_name, shown), page.requests, page.errors

    charts, tables, (hidden, hidden_name, shown), requests, errors = asyncio.run(browse())
    assert errors == [], errors
    assert requests == [report.as_uri()], requests  # the one file: no script, font or image fetched
    assert hidden, "a click on a legend entry hides its line"
    spec = re.search(r'id="class-0-cost-spec">([^<]*)<', report.read_text())
    assert spec is not None
    of_hidden = {m["id"] for m in json.loads(spec.group(1))["markers"] if m.get("series") == hidden_name}
    with_labels = of_hidden | {f"{i}:label" for i in of_hidden if f"{i}:label" in shown}
    assert of_hidden and {i for i, on in shown.items() if not on} == with_labels  # its markers went, no other
    assert sorted(charts) == sorted(f"class-{i}-{k}" for i in (0, 1) for k in ("cost", "utilisation", "savings"))
    colours: dict[str, str] = {}
    for chart_id, chart in charts.items():
        assert chart["painted"] and chart["legend"] == [d["label"] for d in chart["datasets"]], chart_id
        assert chart["legendInside"], chart_id  # no legend entry runs past the chart's edge
        for d in chart["datasets"]:
            assert colours.setdefault(d["label"], d["colour"]) == d["colour"], (chart_id, d["label"])
        for axis in ("x", "y"):
            if chart[axis]["type"] == "logarithmic":
                shown = [label for label in chart[axis]["labels"] if label]
                assert shown and all(LOG_LABEL.match(label) for label in shown), (chart_id, axis, shown)
    for i, (rows, share) in enumerate(zip(tables, (0.8, 0.2), strict=True)):
        options = [label for label, _ in rows]
        assert len(options) >= 10, options  # the report lists many options; every one is drawn
        cost, utilisation = charts[f"class-{i}-cost"], charts[f"class-{i}-utilisation"]
        assert cost["legend"] == options and utilisation["legend"] == options
        assert cost["today"] == PROFILE["requests_per_day"] * share
        crossing = sum(1 for _, crossover in rows if "req/day" in crossover)
        assert crossing and sum(a.startswith("crossover:") and not a.endswith(":label")
                                for a in cost["annotations"]) == crossing  # fmt: skip
        assert utilisation["x"]["min"] == 0 and utilisation["x"]["max"] == 1
        assert utilisation["x"]["labels"] == [f"{p}%" for p in range(0, 101, 10)]
    assert len(set(colours.values())) == len(colours)  # no two options share a colour
    for name in ["plan.png", *(f"{chart_id}.png" for chart_id in charts)]:
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG"), name
