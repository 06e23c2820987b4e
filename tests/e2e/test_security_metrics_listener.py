"""`server.metrics_port`: /metrics on a listener of its own, off the API port (issue 16, item 4).

Real `margin serve` processes on loopback: the API port has no /metrics, the metrics port answers
nothing but /metrics and /healthz, a metrics token still applies there, and a listener that would
expose /metrics to other machines without a token is refused before anything binds.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.cli import run_margin
from tests.support.processes import free_port, gateway

TOKEN = "scrape-token-for-tests"
CONFIG = """
deployments:
  - {{name: small, provider: fake, model: small, price: {{input: "1", output: "1"}}}}
models:
  - {{name: cheap, deployments: [small]}}
server: {{{server}}}
"""


def chat(url: str) -> httpx.Response:
    body = {"model": "cheap", "messages": [{"role": "user", "content": "hello"}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_move_to_their_own_listener(tmp_path: Path, workers: int) -> None:
    metrics_port = free_port()
    config = CONFIG.format(server=f"metrics_port: {metrics_port}, workers: {workers}")
    with gateway(config, tmp_path) as api:
        metrics = f"http://127.0.0.1:{metrics_port}"
        assert chat(api).status_code == 200
        assert httpx.get(f"{api}/metrics", timeout=5).status_code == 404  # not on the API port
        scraped = httpx.get(f"{metrics}/metrics", timeout=5)
        assert scraped.status_code == 200 and "margin_requests_total" in scraped.text
        assert httpx.get(f"{metrics}/healthz", timeout=5).status_code == 200
        for path in ("/v1/models", "/readyz", "/admin/keys", "/openapi.json"):  # not an API port
            assert httpx.get(f"{metrics}{path}", timeout=5).status_code == 404, path
        assert chat(metrics).status_code == 404


def test_a_metrics_token_applies_on_the_metrics_listener_too(tmp_path: Path) -> None:
    metrics_port = free_port()
    config = CONFIG.format(server=f"metrics_port: {metrics_port}, metrics_token: env:SCRAPE_TOKEN")
    with gateway(config, tmp_path, env={"SCRAPE_TOKEN": TOKEN}):
        metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        assert httpx.get(metrics, timeout=5).status_code == 401
        scraped = httpx.get(metrics, headers={"authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert scraped.status_code == 200 and "margin_requests_total" in scraped.text


@pytest.mark.parametrize(
    ("server", "says"),
    [
        ("metrics_port: {port}, metrics_host: 0.0.0.0", "refusing to serve /metrics on 0.0.0.0"),
        ("metrics_port: {api}", "is the API port"),
    ],
)
def test_an_unsafe_metrics_listener_is_refused_before_anything_binds(tmp_path: Path, server: str, says: str) -> None:
    api = free_port()
    config = tmp_path / "margin.yaml"
    config.write_text(CONFIG.format(server=server.format(port=free_port(), api=api)))
    served = run_margin("serve", "--config", config, "--port", str(api), data_dir=tmp_path / "data", timeout=60)
    assert served.returncode == 1 and says in served.stderr
