"""A real Prometheus server (Debian's `prometheus`) scrapes a real `margin serve` on loopback with
the metrics token, loads deploy/prometheus/margin-rules.yml, and reads back through its HTTP API
the requests and spend that traffic from the official OpenAI SDK caused (issue 21, section 6); every
query of deploy/grafana/margin.json parses and runs there."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai

from tests.support.metric_names import require_binary
from tests.support.processes import free_port, gateway, wait_http

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "margin-rules.yml"
TOKEN = "prometheus-scrape-token-for-tests"
CONFIG = """
deployments:
  - {name: small, provider: fake, model: small, price: {input: "1", output: "2"}}
  - {name: unpriced, provider: fake, model: a-model-no-catalog-prices}
models:
  - {name: cheap, deployments: [small]}
  - {name: mystery, deployments: [unpriced]}
server: {metrics_token: env:SCRAPE_TOKEN}
"""
SCRAPE_CONFIG = """
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{rules}"]
scrape_configs:
  - job_name: margin
    metrics_path: /metrics
    authorization: {{type: Bearer, credentials_file: "{token_file}"}}
    static_configs: [{{targets: ["127.0.0.1:{port}"]}}]
"""


@contextmanager
def prometheus(tmp: Path, margin_url: str) -> Iterator[str]:
    token_file = tmp / "scrape-token"
    token_file.write_text(TOKEN)
    config = tmp / "prometheus.yml"
    margin_port = margin_url.rsplit(":", 1)[1]
    config.write_text(SCRAPE_CONFIG.format(rules=RULES, token_file=token_file, port=margin_port))
    port = free_port()
    command = [
        require_binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
    ]  # fmt: skip
    with open(tmp / "prometheus.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=60, process=process)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(30)


def query(prometheus_url: str, promql: str) -> list[dict[str, object]]:
    answer = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, object]] = answer["data"]["result"]
    return result


def wait_for_value(prometheus_url: str, promql: str, expected: float, timeout: float = 60.0) -> float:
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        result = query(prometheus_url, promql)
        if result:
            value = result[0]["value"]
            assert isinstance(value, list)
            seen = float(value[1])
            if seen == expected:
                return seen
        time.sleep(0.5)
    raise AssertionError(f"{promql} is {seen}, not {expected}, after {timeout}s")


def test_prometheus_scrapes_margin_and_reads_back_its_traffic(tmp_path: Path) -> None:
    with gateway(CONFIG, tmp_path, env={"SCRAPE_TOKEN": TOKEN}) as margin_url:
        assert httpx.get(f"{margin_url}/metrics", timeout=5).status_code == 401  # the token is needed
        client = openai.OpenAI(base_url=f"{margin_url}/v1", api_key="unused", max_retries=0)
        for n in range(7):
            client.chat.completions.create(model="cheap", messages=[{"role": "user", "content": f"hello {n}"}])
        with prometheus(tmp_path, margin_url) as prometheus_url:
            requests = 'sum(margin_requests_total{endpoint="chat",model_group="cheap",status="ok"})'
            assert wait_for_value(prometheus_url, requests, 7.0) == 7.0
            targets = httpx.get(f"{prometheus_url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
            assert [t["health"] for t in targets] == ["up"], targets
            spent = query(prometheus_url, 'sum(margin_cost_micro_usd_total{deployment="small"})')
            assert spent and float(spent[0]["value"][1]) > 0  # type: ignore[index]
            groups = httpx.get(f"{prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
            loaded = {rule["name"] for group in groups for rule in group["rules"]}
            assert {"MarginBudgetBurnFast", "MarginLedgerSpillBacklog", "margin:server_error_ratio:rate5m"} <= loaded
            assert all(rule["health"] != "err" for group in groups for rule in group["rules"]), groups
            for panel in json.loads((DEPLOY / "grafana" / "margin.json").read_text())["panels"]:
                for target in panel.get("targets", []):  # Grafana's own variable, as it would expand it
                    query(prometheus_url, target["expr"].replace("$__rate_interval", "1m"))
            assert firing(prometheus_url) == set()


def firing(prometheus_url: str) -> set[tuple[str, str]]:
    alerts = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return {(a["labels"]["alertname"], a["labels"].get("deployment", "")) for a in alerts if a["state"] == "firing"}


def test_an_unpriced_answer_fires_the_unknown_price_alert(tmp_path: Path) -> None:
    with gateway(CONFIG, tmp_path, env={"SCRAPE_TOKEN": TOKEN}) as margin_url:
        client = openai.OpenAI(base_url=f"{margin_url}/v1", api_key="unused", max_retries=0)
        ask = {"model": "mystery", "messages": [{"role": "user", "content": "what does this cost?"}]}
        client.chat.completions.create(**ask)  # type: ignore[call-overload]  # the counter exists from here
        with prometheus(tmp_path, margin_url) as prometheus_url:
            unknown = 'sum(margin_price_unknown_total{deployment="unpriced"})'
            assert wait_for_value(prometheus_url, unknown, 1.0) == 1.0
            assert firing(prometheus_url) == set()
            client.chat.completions.create(**ask)  # type: ignore[call-overload]
            deadline = time.monotonic() + 30
            while ("MarginUnknownPrices", "unpriced") not in firing(prometheus_url):
                assert time.monotonic() < deadline, "MarginUnknownPrices never fired"
                time.sleep(0.5)
