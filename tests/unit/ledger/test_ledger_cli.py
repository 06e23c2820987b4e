"""`margin report` and `margin reprice` against a config whose database.url is a temp SQLite file."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner
from tests.support.ledger_rows import make_row

from margin.cli.report import report
from margin.cli.reprice import reprice
from margin.storage import AuditEntry, open_ledger_store
from margin.storage.ledger_row import LedgerRow

CONFIG = """
data_dir: {data_dir}
database:
  url: "sqlite:///{{data_dir}}/ledger.db"
deployments:
  - name: small
    provider: fake
    model: gpt-4o-mini
    price: {{input: "1", output: "2"}}
"""


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "margin.yaml"
    path.write_text(CONFIG.format(data_dir=tmp_path / "data"))
    return path


def _seed(tmp_path: Path, rows: list[LedgerRow]) -> None:
    async def write() -> None:
        store = open_ledger_store("sqlite:///{data_dir}/ledger.db", tmp_path / "data")
        await store.migrate()
        await store.write(rows)
        await store.close()

    asyncio.run(write())


def _audit(tmp_path: Path) -> list[AuditEntry]:
    async def read() -> list[AuditEntry]:
        store = open_ledger_store("sqlite:///{data_dir}/ledger.db", tmp_path / "data")
        try:
            return await store.audit_log()
        finally:
            await store.close()

    return asyncio.run(read())


def test_report_prints_json_csv_and_a_table(tmp_path: Path) -> None:
    _seed(tmp_path, [make_row(1, cost_total=Decimal("0.5")), make_row(2, tier=2, cost_total=Decimal("1.5"))])
    config = str(_config(tmp_path))
    runner = CliRunner()
    result = runner.invoke(report, ["--by", "cost_rank", "--format", "json", "--since", "1h", "--config", config])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["group_by"] == "cost_rank"
    assert [(g["group"], g["spend_usd"]) for g in body["groups"]] == [("2", "1.5"), ("1", "0.5")]
    old = runner.invoke(report, ["--by", "tier", "--format", "json", "--since", "1h", "--config", config])
    assert old.exit_code == 0 and "--by tier is deprecated" in old.stderr  # accepted until the next release
    assert json.loads(old.stdout)["groups"] == body["groups"]
    assert body["total"]["requests"] == 2
    table = runner.invoke(report, ["--config", config])
    assert table.exit_code == 0 and "gpt-4o-mini" in table.output and "$2.000000" in table.output
    csv_out = runner.invoke(report, ["--format", "csv", "--by", "team", "--config", config])
    assert csv_out.output.splitlines()[0].startswith("group,name,requests,refused_budget,refused_rate_limit,")
    bad = runner.invoke(report, ["--since", "yesterday-ish", "--config", config])
    assert bad.exit_code == 2 and "cannot read" in bad.output


def test_reprice_uses_the_deployment_price_and_records_an_audit(tmp_path: Path) -> None:
    day_ago = time.time() - 86400
    _seed(tmp_path, [make_row(n, ts=day_ago + n, input_uncached=1000, output=500) for n in range(4)])
    config = str(_config(tmp_path))
    dry = CliRunner().invoke(reprice, ["--since", "2d", "--dry-run", "--config", config])
    assert dry.exit_code == 0, dry.output
    assert "4 would change" in dry.output and _audit(tmp_path) == []
    result = CliRunner().invoke(reprice, ["--since", "2d", "--actor", "ops-bot", "--config", config])
    assert result.exit_code == 0, result.output
    assert "4 rows scanned, 4 changed" in result.output
    [entry] = _audit(tmp_path)
    # config price: input $1/M, output $2/M -> 0.001 + 0.001 per row
    assert (entry.actor, entry.new_total, entry.old_total) == ("ops-bot", Decimal("0.008"), Decimal("0.0000018"))
    assert any(version.startswith("config:small") for version in entry.price_versions["new"])


def test_reprice_needs_since(tmp_path: Path) -> None:
    result = CliRunner().invoke(reprice, ["--config", str(_config(tmp_path))])
    assert result.exit_code == 2 and "--since" in result.output
