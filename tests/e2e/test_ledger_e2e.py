"""Cost truth end to end: every attempt a ledger row, priced exactly, whatever happened to it."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.processes import fake_upstream, gateway

WORDS = " ".join(f"w{i}" for i in range(200))  # 200 one-token words


def config(upstream: str) -> str:
    def deployment(name: str, model: str, price: str = '{input: "3", output: "15"}') -> str:
        return f"""  - name: {name}
    provider: openai_compat
    model: {model}
    base_url: {upstream}/v1
    price: {price}
"""

    return f"""
deployments:
{deployment("main", "fake-main")}
{deployment("paced", "fake-paced")}
{deployment("gone-1", "fake-gone-1")}
{deployment("gone-2", "fake-gone-2")}
{deployment("backup", "fake-backup", '{input: "1", output: "2"}')}
  - name: unpriced
    provider: openai_compat
    model: mystery-model-without-a-price
    base_url: {upstream}/v1
models:
  - {{name: chat, deployments: [main]}}
  - {{name: paced, deployments: [paced]}}
  - {{name: chain, deployments: [gone-1, gone-2, backup]}}
  - {{name: unpriced, deployments: [unpriced]}}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("ledger")
    faults = [
        "--fault",
        "fake-gone-1=status=404",
        "--fault",
        "fake-gone-2=status=404",
        "--fault",
        "fake-paced=pace=0.02",
    ]
    with fake_upstream("--chunks", "200", *faults) as upstream, gateway(config(upstream), tmp) as url:
        yield url, tmp / "data" / "margin.db"


def rows(db: Path, request_id: str, expected: int, timeout: float = 10) -> list[sqlite3.Row]:
    """The ledger rows of one request, once the background writer has written them all."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(db) as conn:
            conn.row_factory = sqlite3.Row
            found = conn.execute(
                "SELECT * FROM ledger_attempts WHERE request_id = ? ORDER BY attempt_index", (request_id,)
            ).fetchall()
        if len(found) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_streamed_and_plain_answers_record_identical_usage_and_cost(served: tuple[str, Path]) -> None:
    url, db = served
    messages = [{"role": "user", "content": "the same prompt both ways"}]
    plain = client(url).chat.completions.with_raw_response.create(model="chat", messages=messages)
    with client(url).chat.completions.with_streaming_response.create(
        model="chat", messages=messages, stream=True
    ) as streamed:
        list(streamed.iter_lines())
    a = rows(db, plain.headers["x-request-id"], 1)[0]
    b = rows(db, streamed.headers["x-request-id"], 1)[0]
    for column in ("input_uncached", "output", "cost_total", "usage_source", "status"):
        assert a[column] == b[column], column
    assert Decimal(a["cost_total"]) == Decimal(plain.headers["x-margin-cost-usd"]) > 0


def test_disconnect_after_20_of_200_tokens_leaves_one_row_with_what_was_generated(
    served: tuple[str, Path],
) -> None:
    url, db = served
    body = {"model": "paced", "stream": True, "messages": [{"role": "user", "content": WORDS}]}
    with httpx.Client(base_url=url, timeout=30) as http, http.stream("POST", "/v1/chat/completions", json=body) as r:
        request_id = r.headers["x-request-id"]
        events = 0
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content":"' in line:
                events += 1
            if events == 21:  # the role event carries "content":"" too: 20 content events after it
                break
    found = rows(db, request_id, 1)
    time.sleep(0.5)
    assert len(rows(db, request_id, 1)) == 1
    row = found[0]
    assert row["status"] == "cancelled" and row["usage_source"] == "estimated"
    assert 20 <= row["output"] <= 30  # what margin received before it noticed the hang-up
    assert Decimal(row["cost_total"]) == (Decimal(row["input_uncached"]) * 3 + Decimal(row["output"]) * 15) / 10**6


def test_two_failed_attempts_and_a_fallback_leave_three_rows(served: tuple[str, Path]) -> None:
    url, db = served
    raw = client(url).chat.completions.with_raw_response.create(
        model="chain", messages=[{"role": "user", "content": "who answers?"}]
    )
    assert raw.parse().model == "fake-backup"
    found = rows(db, raw.headers["x-request-id"], 3)
    assert [r["deployment"] for r in found] == ["gone-1", "gone-2", "backup"]
    assert [r["status"] for r in found] == ["error", "error", "ok"]
    assert [r["is_final"] for r in found] == [0, 0, 1]
    assert [Decimal(r["cost_total"]) for r in found[:2]] == [0, 0]
    assert Decimal(found[2]["cost_total"]) == Decimal(raw.headers["x-margin-cost-usd"]) > 0


def test_unknown_price_is_flagged_never_a_silent_zero(served: tuple[str, Path]) -> None:
    url, db = served
    raw = client(url).chat.completions.with_raw_response.create(
        model="unpriced", messages=[{"role": "user", "content": "what does this cost?"}]
    )
    assert raw.headers["x-margin-price-unknown"] == "true"
    row = rows(db, raw.headers["x-request-id"], 1)[0]
    assert row["price_unknown"] == 1 and row["price_basis"] == "unknown"
    metrics = httpx.get(f"{url}/metrics").text
    assert 'margin_price_unknown_total{deployment="unpriced"}' in metrics
    log = (db.parent.parent / "gateway.log").read_text()
    assert "price unknown for model 'mystery-model-without-a-price'" in log


def test_admin_spend_matches_the_ledger(served: tuple[str, Path]) -> None:
    url, db = served
    client(url).chat.completions.create(model="chat", messages=[{"role": "user", "content": "count me"}])
    time.sleep(0.3)
    report = httpx.get(f"{url}/admin/spend", params={"since": "1h", "by": "deployment"}).json()
    with sqlite3.connect(db) as conn:
        total = sum(Decimal(v) for (v,) in conn.execute("SELECT cost_total FROM ledger_attempts"))
    assert sum(Decimal(str(g["spend_usd"])) for g in report["groups"]) == total
    assert httpx.get(f"{url}/admin/spend", params={"by": "nonsense"}).status_code == 400
