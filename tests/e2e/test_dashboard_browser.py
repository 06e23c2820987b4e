"""The dashboard in a real browser (issue 21, section 3): headless Chromium logs in through the form
on a real `margin serve` that OpenAI-SDK traffic filled, the Overview loads with no console error and
no request leaving 127.0.0.1, its figures equal the JSON twin's, its Chart.js charts (the vendored
library, served by the dashboard itself) drew the twin's figures, and a screenshot is written."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai

from tests.support.chromium import Page, chromium_page
from tests.support.dashboard import twin_value
from tests.support.processes import gateway

ADMIN = "sk-admin-browser-tests-0123456789abcdef"
CONFIG = """
server: {admin_key: env:MARGIN_ADMIN_KEY}
deployments:
  - {name: small, provider: fake, model: small, price: {input: "1", output: "2"}}
models:
  - {name: cheap, deployments: [small]}
budgets:
  - {scope: global, limit_usd: 50, window: month}
"""
# Every Chart.js chart on the page: its datasets and their values, its legend, and whether its canvas
# has any painted pixel.
CHARTS = """JSON.stringify(Object.fromEntries(Object.entries(window.marginCharts || {}).map(([id, c]) => [id, {
  labels: c.data.labels, datasets: c.data.datasets.map(d => ({label: d.label, data: d.data})),
  legend: c.legend.legendItems.map(i => i.text),
  painted: c.ctx.getImageData(0, 0, c.canvas.width, c.canvas.height).data.some((v, i) => i % 4 === 3 && v > 0),
}])))"""
FIGURES = "JSON.stringify(Object.fromEntries([...document.querySelectorAll('[data-figure]')].map(e => [e.dataset.figure, e.textContent])))"  # noqa: E501


def overview_json(url: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/admin/api/overview", headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def wait_for_requests(url: str, expected: int) -> dict[str, Any]:
    """The twin once every row and rollup is stored: the ledger writer stores rows off the request
    path and the rollups' cells may land a moment after the request count, so wait until `expected`
    requests show and the figures stop changing (`period.now` aside)."""
    deadline = time.monotonic() + 20
    previous: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        twin = overview_json(url)
        settled = {**twin, "period": {**twin["period"], "now": None}}
        if twin["requests"]["total"] >= expected and settled == previous:
            return twin
        previous = settled if twin["requests"]["total"] >= expected else None
        time.sleep(0.3)
    return twin


async def log_in(page: Page, url: str) -> None:
    await page.navigate(f"{url}/dashboard")  # no session: redirected to the form
    assert await page.evaluate("location.pathname") == "/dashboard/login"
    await page.evaluate(f"document.querySelector('[name=admin_key]').value = {json.dumps(ADMIN)}")
    page._loaded.clear()
    await page.evaluate("document.querySelector('form').submit()")
    await page.wait_loaded()
    assert await page.evaluate("location.pathname") == "/dashboard"


def test_overview_in_chromium_matches_its_json_twin(tmp_path: Path) -> None:
    with gateway(CONFIG, tmp_path, env={"MARGIN_ADMIN_KEY": ADMIN}) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        for n in range(5):
            client.chat.completions.create(model="cheap", messages=[{"role": "user", "content": f"hi {n}"}])
        twin = wait_for_requests(url, 5)

        async def browse() -> tuple[dict[str, str], dict[str, Any], list[str], list[str], str]:
            async with chromium_page(tmp_path / "profile") as page:
                await log_in(page, url)
                figures = json.loads(await page.evaluate(FIGURES))
                charts = json.loads(await page.evaluate(CHARTS))
                html = await page.evaluate("document.documentElement.outerHTML")
                await page.screenshot(tmp_path / "overview.png")
                return figures, charts, page.requests, page.errors, html

        figures, charts, requests, errors, html = asyncio.run(browse())
    assert twin["requests"]["total"] == 5 and twin["spend"]["spent_usd"] != "0.000000"
    assert len(figures) >= 20
    for path, shown in figures.items():
        assert shown.lstrip("$") == twin_value(twin, path, gaps=True), path
    assert errors == [], errors
    assert sorted(charts) == [f"chart-top-{by}" for by in sorted(twin["top"])]  # Chart.js drew every chart
    for by, lines in twin["top"].items():
        chart = charts[f"chart-top-{by}"]
        assert chart["painted"] and chart["labels"] == [line["group"] for line in lines]
        assert chart["datasets"][0]["data"] == [float(line["spend_usd"]) for line in lines]
    assert requests and all(urlsplit(r).hostname == "127.0.0.1" or r.startswith("data:") for r in requests), requests
    assert ADMIN not in html
    screenshot = (tmp_path / "overview.png").read_bytes()
    assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 10_000
