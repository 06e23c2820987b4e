"""What an operator lives with (issue 20, items 3-7), through the installed `margin` and real HTTP:
`margin serve --data-dir` says where its config and data are; refused requests (402, 429) reach
the report in their own columns, keys by name, in a table within 120 columns, CSV and XLSX; the
402 says which max_tokens would fit (and that one does); /metrics carries circuit, in-flight and
team-budget gauges and the documented error vocabulary; `margin config show` prints the effective
and the built-in config with secrets masked."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.cli import cli_env, margin_script, run_margin
from tests.support.processes import free_port, running

ADMIN_KEY = "admin-secret-for-operator-tests"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
SERVED, REFUSED_BUDGET, REFUSED_RATE = 5, 2, 1  # what the fixture sends and how it ends


def gateway_config(upstream: str) -> str:
    return f"""
server: {{admin_key: env:MARGIN_ADMIN_KEY}}
cache: {{enabled: false}}
deployments:
  - name: fake-chat
    provider: openai_compat
    model: fake-chat
    base_url: {upstream}/v1
    api_key: env:FAKE_UPSTREAM_KEY
    cost_rank: 2
    price: {{input: "2.50", output: "10.00"}}
models:
  - {{name: chat, deployments: [fake-chat]}}
budgets:
  - {{scope: 'team:search', limit_usd: 5, window: day}}
rate_limits:
  - {{scope: 'team:ops', requests_per_minute: 2}}
"""


@dataclass(frozen=True)
class Served:
    url: str
    data_dir: Path
    config: Path
    log: Path
    refusal: dict  # type: ignore[type-arg]  # the first 402's error body
    fitted_status: int  # the request sent with the max_tokens the 402 named


def _key(url: str, **spec: object) -> str:
    response = httpx.post(f"{url}/admin/keys", json=spec, headers=ADMIN, timeout=10)
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def _chat(client: openai.OpenAI, max_tokens: int) -> int:
    try:
        client.chat.completions.create(
            model="chat", max_tokens=max_tokens, messages=[{"role": "user", "content": "Name a colour."}]
        )
    except openai.APIStatusError as error:
        return error.status_code
    return 200


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("operator")
    data_dir, config, log = tmp / "state", tmp / "margin.yaml", tmp / "gateway.log"
    env = cli_env(tmp / "not-this-one", {"MARGIN_ADMIN_KEY": ADMIN_KEY, "FAKE_UPSTREAM_KEY": "sk-upstream"})
    fake_port, port = free_port(), free_port()
    upstream, url = f"http://127.0.0.1:{fake_port}", f"http://127.0.0.1:{port}"
    config.write_text(gateway_config(upstream))
    program = [str(margin_script())]
    serve = ["serve", "--config", str(config), "--port", str(port), "--data-dir", str(data_dir)]
    with (
        running(["fake-upstream", "--port", str(fake_port)], f"{upstream}/v1/models", program=program, env=env),
        running(serve, f"{url}/healthz", program=program, env=env, log=log),
    ):
        search = _key(url, name="search-bot", team="search", budget={"limit_usd": "0.001"})
        ops = _key(url, name="ops-bot", team="ops")
        searching = openai.OpenAI(base_url=f"{url}/v1", api_key=search, max_retries=0)
        assert [_chat(searching, 8) for _ in range(2)] == [200, 200]
        refusal: dict = {}  # type: ignore[type-arg]
        for _ in range(REFUSED_BUDGET):  # 2000 tokens at $10/M: $0.02, far over the key's $0.001
            try:
                searching.chat.completions.create(
                    model="chat", max_tokens=2000, messages=[{"role": "user", "content": "Name a colour."}]
                )
            except openai.APIStatusError as error:
                assert error.status_code == 402
                refusal = error.response.json()["error"]
        fitted = _chat(searching, refusal["max_tokens_that_fit"])
        operating = openai.OpenAI(base_url=f"{url}/v1", api_key=ops, max_retries=0)
        assert [_chat(operating, 8) for _ in range(3)] == [200, 200, 429]  # two a minute
        yield Served(url, data_dir, config, log, refusal, fitted)


def report(served: Served, *args: str) -> dict:  # type: ignore[type-arg]
    """`margin report --format json --data-dir DIR` once the ledger holds every request."""
    deadline = time.monotonic() + 15
    while True:
        done = run_margin(
            "report", "--format", "json", "--since", "1h", "--config", served.config,
            "--data-dir", served.data_dir, *args, data_dir=served.data_dir.parent / "elsewhere",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        body: dict = json.loads(done.stdout)  # type: ignore[type-arg]
        if body["total"]["requests"] >= SERVED + REFUSED_BUDGET + REFUSED_RATE or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_serve_says_where_its_config_and_data_are(served: Served) -> None:
    text = served.log.read_text()
    assert f"margin: config {served.config}; data dir {served.data_dir} (from --data-dir)" in text
    assert (served.data_dir / "margin.db").is_file()  # --data-dir, not the MARGIN_DATA_DIR it inherited
    assert not (served.data_dir.parent / "not-this-one" / "margin.db").exists()


def test_the_402_names_the_reservation_and_a_max_tokens_that_fits(served: Served) -> None:
    refusal = served.refusal
    assert refusal["code"] == "budget_exceeded" and refusal["scope"].startswith("key:")
    assert f"max_tokens <= {refusal['max_tokens_that_fit']}" in refusal["message"]
    assert f"reserves {refusal['requested']} USD" in refusal["message"]
    assert 8 < refusal["max_tokens_that_fit"] < 2000
    assert served.fitted_status == 200  # the figure is right: that request is answered


def test_refused_requests_are_in_the_report_by_team_and_key_name(served: Served) -> None:
    by_team = {g["group"]: g for g in report(served, "--by", "team")["groups"]}
    search, ops = by_team["search"], by_team["ops"]
    assert (search["requests"], search["successful_requests"], search["refused_budget"]) == (5, 3, 2)
    assert (ops["requests"], ops["successful_requests"], ops["refused_rate_limit"]) == (3, 2, 1)
    assert search["attempts"] == 3  # a refusal never called the upstream
    by_key = report(served, "--by", "key")["groups"]
    assert {g.get("name") for g in by_key} == {"search-bot", "ops-bot"}
    by_rank = report(served, "--by", "cost_rank")["groups"]
    assert {g.get("name", g["group"]) for g in by_rank} == {"cost_rank 2: fake-chat", "(none)"}


def test_the_report_table_fits_120_columns_and_wide_and_xlsx_have_everything(served: Served) -> None:
    report(served)  # every row is stored
    common = ("report", "--since", "1h", "--by", "key", "--config", served.config, "--data-dir", served.data_dir)
    table = run_margin(*common, data_dir=served.data_dir)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert "402 budget" in lines[1] and "429 limit" in lines[1] and "search-bot" in table.stdout
    wide = run_margin(*common, "--wide", data_dir=served.data_dir)
    assert "ttft ms p50/95/99" in wide.stdout and max(len(line) for line in wide.stdout.splitlines()) > 120
    out = served.data_dir.parent / "report.xlsx"
    book = run_margin(*common, "--format", "xlsx", "--out", out, data_dir=served.data_dir)
    assert book.returncode == 0 and f"wrote {out}" in book.stderr, book.stderr
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as workbook:
        strings = workbook.read("xl/sharedStrings.xml").decode()
    assert "search-bot" in strings and "refused_budget" in strings
    refused = run_margin(*common, "--format", "xlsx", data_dir=served.data_dir)
    assert refused.returncode == 2 and "give --out" in refused.stderr


def test_metrics_carry_the_gauges_an_operator_alerts_on(served: Served) -> None:
    report(served)  # the recorder has seen every request
    text = httpx.get(f"{served.url}/metrics", headers=ADMIN, timeout=10).text
    assert 'margin_circuit_state{deployment="fake-chat",state="closed"} 1.0' in text
    assert 'margin_deployment_in_flight{deployment="fake-chat"} 0.0' in text
    assert re.search(r'margin_team_budget_remaining\{team="search",unit="usd",window="day@UTC"\} 4\.99', text)
    assert 'margin_errors_total{endpoint="chat",error="budget_exceeded"} 2.0' in text
    assert 'margin_errors_total{endpoint="chat",error="rate_limit_exceeded"} 1.0' in text
    assert "_created" not in text


def test_config_show_prints_the_effective_and_the_builtin_config_masked(served: Served, tmp_path: Path) -> None:
    secrets = {"OPENAI_API_KEY": "sk-must-not-print", "MARGIN_ADMIN_KEY": "admin-must-not-print"}
    shown = run_margin("config", "show", "--config", served.config, data_dir=tmp_path / "d", env=secrets)
    assert shown.returncode == 0, shown.stderr
    assert "api_key: env:FAKE_UPSTREAM_KEY" in shown.stdout and "rate_limits:" in shown.stdout
    assert f"# config: {served.config}; data dir: {tmp_path / 'd'} (from MARGIN_DATA_DIR)" in shown.stderr
    defaults = run_margin("config", "show", "--defaults", "--data-dir", tmp_path / "x", data_dir=tmp_path, env=secrets)
    assert defaults.returncode == 0, defaults.stderr
    assert "name: local-smollm2" in defaults.stdout and "api_key: env:OPENAI_API_KEY" in defaults.stdout
    assert f"data dir: {tmp_path / 'x'} (from --data-dir)" in defaults.stderr
    assert "must-not-print" not in shown.stdout + shown.stderr + defaults.stdout + defaults.stderr
    pinned = tmp_path / "pinned.yaml"
    pinned.write_text(f"data_dir: {tmp_path / 'pinned'}\n")
    clash = run_margin("config", "show", "--config", pinned, "--data-dir", tmp_path / "other", data_dir=tmp_path)
    assert clash.returncode == 2 and "contradicts the config's data_dir" in clash.stderr


def test_completion_script_and_completions_come_from_the_installed_margin(tmp_path: Path) -> None:
    script = run_margin(data_dir=tmp_path, env={"_MARGIN_COMPLETE": "bash_source"})
    assert script.returncode == 0 and "_margin_completion()" in script.stdout
    assert "complete -o nosort -F _margin_completion margin" in script.stdout
    env = {"_MARGIN_COMPLETE": "bash_complete", "COMP_WORDS": "margin rep", "COMP_CWORD": "1"}
    words = run_margin(data_dir=tmp_path, env=env).stdout.split()
    assert {"plain,report", "plain,reprice"} <= set(words)
