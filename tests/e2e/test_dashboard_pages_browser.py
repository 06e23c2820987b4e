"""Every dashboard page in a real browser (issue 21, section 3): on a real `margin serve` filled by
OpenAI-SDK traffic (two models, one request answered from the cache),
headless Chromium logs in through the form and opens the spend explorer, performance, budgets and
cache pages, rollouts and batches, the planner (a profile inline in the config; its crossover chart drawn by
Chart.js) (and follows the explorer's form): each loads with no console error and no request
leaving 127.0.0.1, shows exactly its JSON twin's figures, and a screenshot of each is written to
the test's temp dir."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai

from tests.e2e.test_dashboard_browser import ADMIN, FIGURES, log_in, wait_for_requests
from tests.support.chromium import chromium_page
from tests.support.dashboard import twin_value
from tests.support.processes import gateway

CONFIG = """
server: {admin_key: env:MARGIN_ADMIN_KEY}
deployments:
  - {name: small, provider: fake, model: small, price: {input: "1", output: "2"}}
  - {name: large, provider: fake, model: large, price: {input: "3", output: "6"}}
models:
  - {name: cheap, deployments: [small]}
  - {name: smart, deployments: [large]}
budgets:
  - {scope: global, limit_usd: 50, window: month}
  - {scope: "team:*", limit_usd: 5, window: day}
dashboard:
  planner:
    profile:
      requests_per_day: 1000
      input_tokens: {mean: 500, p95: 1000}
      output_tokens: {mean: 250, p95: 500}
      sla: {ttft_ms: 1000, p95_ms: 30000}
      ops_capacity: dedicated
      candidates: {compare_to: openai/gpt-4.1, apis: [openai/gpt-4.1], models: [llama-3.1-8b], gpus: [a10g],
                   providers: [aws], precisions: [fp16], pricing: [on_demand], managed: []}
"""
PAGES = (
    "spend", "spend?by=model&period=hour&since=6h", "spend?by=deployment", "performance", "performance?period=day",
    "budgets", "cache", "rollouts", "planner",
)  # fmt: skip
PLANNER_CHART = """JSON.stringify(Object.fromEntries(Object.entries(window.marginCharts || {}).map(([id, c]) => [id, {
  datasets: c.data.datasets.map(d => d.label),
  annotations: Object.keys(c.options.plugins.annotation.annotations),
  today: c.options.plugins.annotation.annotations.today && c.options.plugins.annotation.annotations.today.value,
}])))"""


SERIES_CHARTS = """JSON.stringify(Object.fromEntries(Object.entries(window.marginCharts || {}).map(([id, c]) => [id, {
  datasets: c.data.datasets.map(d => d.label), values: c.data.datasets.map(d => d.data),
}])))"""


def twin(url: str, page: str) -> dict[str, Any]:
    name, _, query = page.partition("?")
    answer = httpx.get(f"{url}/admin/api/{name}?{query}", headers={"authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_every_page_in_chromium_matches_its_json_twin(tmp_path: Path) -> None:
    with gateway(CONFIG, tmp_path, env={"MARGIN_ADMIN_KEY": ADMIN}) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        for n in range(4):
            client.chat.completions.create(
                model="cheap", messages=[{"role": "user", "content": f"hi {n}"}], temperature=0
            )
        client.chat.completions.create(model="smart", messages=[{"role": "user", "content": "hi 0"}])
        client.chat.completions.create(model="cheap", messages=[{"role": "user", "content": "hi 0"}], temperature=0)
        wait_for_requests(url, 6)
        twins: dict[str, dict[str, Any]] = {}
        charts: dict[str, Any] = {}

        async def browse() -> tuple[dict[str, dict[str, str]], list[str], list[str], str]:
            shown: dict[str, dict[str, str]] = {}
            async with chromium_page(tmp_path / "profile") as page:
                await log_in(page, url)
                for name in PAGES:
                    await page.navigate(f"{url}/dashboard/{name}")
                    shown[name] = json.loads(await page.evaluate(FIGURES))
                    if name == "planner":
                        charts.update(json.loads(await page.evaluate(PLANNER_CHART)))
                    if name == "performance":
                        charts.update(json.loads(await page.evaluate(SERIES_CHARTS)))
                    twins[name] = twin(url, name)  # at once: "7d" means the same minutes to both
                    await page.screenshot(tmp_path / f"{name.replace('?', '_').replace('&', '_')}.png")
                await page.navigate(f"{url}/dashboard/spend")  # the explorer's own form: group by key
                page._loaded.clear()
                await page.evaluate("document.querySelector('[name=by]').value = 'key'")
                await page.evaluate("document.querySelector('form[method=get]').submit()")
                await page.wait_loaded()
                shown["form"] = json.loads(await page.evaluate(FIGURES))
                twins["form"] = twin(url, "spend" + await page.evaluate("location.search"))
                html = await page.evaluate("document.documentElement.outerHTML")
                return shown, page.requests, page.errors, html

        shown, requests, errors, html = asyncio.run(browse())
    assert twins["form"]["query"]["by"] == "key"
    for name, figures in shown.items():
        assert len(figures) >= (3 if name == "rollouts" else 5), name  # no rollout or batch here
        for path, text in figures.items():
            assert text == twin_value(twins[name], path, gaps=True), (name, path)
    assert twins["spend"]["summary"]["requests"] == 6
    assert twins["cache"]["summary"]["cache_hits"] == 1
    assert {row[0] for row in twins["performance"]["tables"]["deployments"]["rows"]} == {"small", "large", "cache"}
    planner = twins["planner"]
    assert planner["summary"]["requests"] == 6 and planner["tables"]["options"]["rows"], planner
    options = [row[1] for row in planner["tables"]["options"]["rows"]]
    # the performance page's charts: p95 latency and tokens/s per deployment, drawn from the twin's series
    series = twins["performance"]["tables"]["series"]["rows"]
    deployments = sorted({row[1] for row in series})
    assert charts.pop("chart-latency-p95")["datasets"] == deployments, charts
    throughput = charts.pop("chart-tokens-per-s")
    assert throughput["datasets"] == deployments
    assert sorted(v for values in throughput["values"] for v in values if v is not None) == sorted(
        row[6] for row in series if row[6] is not None
    )
    assert list(charts) == ["chart-planner-0"] and charts["chart-planner-0"]["datasets"] == options, charts
    assert "today" in charts["chart-planner-0"]["annotations"], charts
    today = planner["tables"]["crossover"]["rows"][0][1]  # the measured requests/day the chart is drawn at
    assert abs(charts["chart-planner-0"]["today"] - float(today)) <= 0.05, (today, charts)
    assert errors == [], errors
    assert requests and all(urlsplit(r).hostname == "127.0.0.1" or r.startswith("data:") for r in requests), requests
    assert ADMIN not in html
    for name in PAGES:
        screenshot = (tmp_path / f"{name.replace('?', '_').replace('&', '_')}.png").read_bytes()
        assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 10_000, name
