"""`margin whatif import-ledger`: margin's SQLite ledger and production sample (real stores, written
here) joined into what-if traffic; requests without a body count for volume and cost only, margin's
own eval/whatif calls, failures and embeddings are left out, and the traffic replays."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner
from tests.support.ledger_rows import make_row

from margin.cli import main
from margin.storage import open_ledger_store
from margin.storage.ledger_row import LedgerRow
from margin.storage.rollout_stores import open_rollout_store
from margin.storage.rollouts import SampleRecord
from margin.whatif.config import parse_whatif_config
from margin.whatif.report import report_json
from margin.whatif.run import run_whatif
from margin.whatif.traffic import parse_lines

CONFIG = (
    "deployments:\n  - {name: small, provider: fake, model: gpt-4o-mini}\n"
    "models:\n  - {name: chat, deployments: [small]}\n"
)
MILLION = Decimal(1_000_000)


async def seed(data_dir: Path, rows: list[LedgerRow], samples: list[SampleRecord]) -> None:
    ledger = open_ledger_store("sqlite:///{data_dir}/margin.db", data_dir)
    store = open_rollout_store("sqlite:///{data_dir}/margin.db", data_dir)
    try:
        await ledger.migrate()
        await store.migrate()
        await ledger.write(rows)
        for sample in samples:
            await store.add_sample(sample)
    finally:
        await ledger.close()
        await store.close()


def sample(n: int, text: str) -> SampleRecord:
    messages = [{"role": "user", "content": text}]
    return SampleRecord(f"s{n}", "chat", time.time(), f"req-{n}", "small", messages, f"answer to {text}", {})


def test_ledger_rows_and_samples_become_traffic(tmp_path: Path) -> None:
    now = time.time() - 3600
    usage = {"input_uncached": 1000, "input_cache_read": 200, "output": 80, "output_reasoning": 20}
    rows = [make_row(n, ts=now + n, **usage) for n in range(6)]  # req-0 .. req-5: chat, ok
    rows += [
        make_row(6, ts=now + 6, tags=("eval",)),  # margin's own eval call
        make_row(7, ts=now + 7, status="error"),
        make_row(8, ts=now + 8, endpoint="embeddings"),
        make_row(9, ts=now - 30 * 86_400),  # before --since
    ]
    # req-0 and req-3 ask the same question (an exact repeat); req-1 another; the rest have no body
    samples = [
        sample(0, "What is our refund policy?"),
        sample(1, "Reset my password"),
        sample(3, "What is our refund policy?"),
    ]
    asyncio.run(seed(tmp_path, rows, samples))
    (tmp_path / "margin.yaml").write_text(CONFIG)
    result = CliRunner().invoke(
        main,
        ["whatif", "import-ledger", "--since", "7d", "--config", str(tmp_path / "margin.yaml")],
        env={"MARGIN_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    assert "6 requests: 3 with bodies, 3 volume only" in result.stderr
    assert "1 endpoint embeddings" in result.stderr and "1 status error" in result.stderr
    assert "1 tagged eval or whatif" in result.stderr
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [x["margin"]["request_id"] for x in lines] == [f"req-{n}" for n in range(6)]  # oldest first
    first = lines[0]
    assert first["request"] == {
        "model": "chat",
        "messages": [{"role": "user", "content": "What is our refund policy?"}],
    }
    assert first["response"]["choices"][0]["message"]["content"] == "answer to What is our refund policy?"
    assert (
        first["response"]["usage"]["prompt_tokens"] == 1200 and first["response"]["usage"]["completion_tokens"] == 100
    )
    assert first["tenant"] == "key:org/key-a" and first["timestamp"] == now
    assert [x.get("volume_only", False) for x in lines] == [False, False, True, False, True, True]

    # The traffic replays: every request is priced (gpt-4o-mini from the catalog, cached input at its
    # rate), only the repeat with a body is a cache hit (every call is cached by this candidate).
    config = parse_whatif_config(
        {"tiers": {"strong": "gpt-4o-mini"}, "cache": {"exact": {"deterministic_only": False}}}
    )
    report = report_json(run_whatif(parse_lines(enumerate(result.stdout.splitlines(), start=1)), config))
    each = (
        Decimal(1000) * Decimal("0.15") + Decimal(200) * Decimal("0.075") + Decimal(100) * Decimal("0.60")
    ) / MILLION
    assert Decimal(report["current_cost_usd"]) == 6 * each
    assert report["cache"]["exact_hits"] == 1 and Decimal(report["cache"]["saved_exact_usd"]) == each
    assert report["volume_only"] == 3 and report["records"] == 6
    assert not any("line" in issue for issue in report["issues"])
