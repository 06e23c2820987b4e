"""A `native` batch is reserved against its creator's budgets before it goes to the provider: the
official openai SDK submits to margin, margin charges the batch's worst case (each line's live worst
case at the batch price) to the team's budget, hands it to the fake upstream's Batch API, and once the
answers are billed settles the budget to exactly the ledger's figure; a batch whose worst case does
not fit is never submitted natively (it runs `local`, line by line, each line reserved as a live
request); a cancelled batch gives back what it did not spend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.batch_env import chat_line, jsonl, settled_ledger_rows, upload, wait_for
from tests.e2e.test_batch_native import native_config
from tests.support.processes import fake_upstream, gateway_process

ADMIN = "native-budget-admin"
# The team's budget: 20 lines of 4096 max output tokens at the batch price ($0.0246) do not fit it; 2 lines
# in flight at once (batch.concurrency) at the live price ($0.0049) do.
LIMIT = Decimal("0.02")


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with fake_upstream() as url:
        yield url


@pytest.fixture(scope="module")
def served(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("native-budget")
    config = native_config(upstream).replace("batch: {", "batch: {concurrency: 2, ") + (
        f'budgets: [{{scope: "team:default", limit_usd: "{LIMIT}"}}]\nserver: {{admin_key: {ADMIN}}}\n'
    )
    with gateway_process(config, tmp, env={"FAKE_UPSTREAM_KEY": "sk-fake-secret-123"}) as (url, _):
        yield url, tmp / "data"


@pytest.fixture
def client(served: tuple[str, Path]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served[0]}/v1", api_key="unused", max_retries=0)


def _spent(url: str) -> Decimal:
    status = httpx.get(f"{url}/admin/budgets/status", headers={"authorization": f"Bearer {ADMIN}"})
    status.raise_for_status()
    (entry,) = [e for e in status.json()["data"] if e["scope"] == "team:default"]
    return Decimal(entry["spent"])


def _spent_becomes(url: str, expected: Decimal, timeout: float = 10) -> Decimal:
    deadline = time.monotonic() + timeout
    spent = _spent(url)
    while spent != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        spent = _spent(url)
    return spent


def _nano_ceil(usd: Decimal) -> Decimal:
    return (usd * 10**9).to_integral_value(rounding=ROUND_CEILING) / 10**9


def _ledger_sum(rows: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(str(r["cost_total"])) for r in rows), Decimal(0))


def _provider(upstream: str) -> dict[str, Any]:
    return dict(httpx.get(f"{upstream}/_fake/batches").json())


def _delay(upstream: str, seconds: float) -> None:
    httpx.post(f"{upstream}/_fake/batches", json={"line_delay_s": seconds}).raise_for_status()


def _create(client: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    return client.batches.create(input_file_id=upload(client, jsonl(lines)), endpoint="/v1/chat/completions",
                                 completion_window="24h").id  # fmt: skip


def test_a_batch_over_the_budget_is_not_submitted_natively(
    client: openai.OpenAI, served: tuple[str, Path], upstream: str
) -> None:
    url, data = served
    before, provider_before = _spent(url), _provider(upstream)
    # No max_tokens: each line's worst case is 4096 output tokens, $0.00123 at the batch price: 20 = $0.0246.
    batch_id = _create(client, [chat_line(f"o{i}", f"over budget {i}", model="mini") for i in range(20)])
    done = wait_for(client, batch_id)
    assert done.status == "completed" and done.request_counts is not None and done.request_counts.completed == 20
    provider_after = _provider(upstream)
    assert provider_after["batches"] == provider_before["batches"]  # the provider's Batch API received nothing
    assert provider_after["lines_run"] == provider_before["lines_run"]
    rows = settled_ledger_rows(data, batch_id, 20)
    assert len(rows) == 20 and not any(r["batch"] for r in rows)  # each line ran live, at the live price
    assert _spent_becomes(url, before + _ledger_sum(rows)) - before >= _ledger_sum(rows) > 0


def test_a_batch_that_fits_is_reserved_then_settled_to_the_ledger(
    client: openai.OpenAI, served: tuple[str, Path], upstream: str
) -> None:
    url, data = served
    before, batches_before = _spent(url), _provider(upstream)["batches"]
    _delay(upstream, 0.1)
    try:
        lines = [chat_line(f"f{i}", f"fits {i}", model="mini") for i in range(6)]
        for line in lines:
            line["body"]["max_tokens"] = 200
        batch_id = _create(client, lines)
        wait_for(client, batch_id, ("in_progress",))
        deadline = time.monotonic() + 10
        while _provider(upstream)["batches"] == batches_before and time.monotonic() < deadline:
            time.sleep(0.05)
        reserved = _spent(url) - before  # the worst case, charged before the provider ran anything
        done = wait_for(client, batch_id)
    finally:
        _delay(upstream, 0.0)
    assert done.status == "completed" and _provider(upstream)["batches"] == batches_before + 1
    rows = settled_ledger_rows(data, batch_id, 6)
    billed = _ledger_sum(rows)
    assert len(rows) == 6 and all(r["batch"] for r in rows) and billed > 0
    assert reserved > billed  # 6 x 200 output tokens at least, more than the fake model writes
    assert _spent_becomes(url, _nano_ceil(before + billed)) == _nano_ceil(before + billed)


def test_cancel_gives_back_what_was_not_spent(client: openai.OpenAI, served: tuple[str, Path], upstream: str) -> None:
    url, data = served
    before = _spent(url)
    _delay(upstream, 0.2)
    try:
        lines = [chat_line(f"c{i}", f"cancel {i}", model="mini") for i in range(5)]
        for line in lines:
            line["body"]["max_tokens"] = 300
        batch_id = _create(client, lines)
        wait_for(client, batch_id, ("in_progress",))
        deadline = time.monotonic() + 10
        while _spent(url) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        reserved = _spent(url) - before
        client.batches.cancel(batch_id)
        done = wait_for(client, batch_id)
    finally:
        _delay(upstream, 0.0)
    assert done.status == "cancelled" and reserved > 0
    assert done.request_counts is not None and done.request_counts.completed < 5
    rows = settled_ledger_rows(data, batch_id, done.request_counts.completed)
    assert _spent_becomes(url, _nano_ceil(before + _ledger_sum(rows))) == _nano_ceil(before + _ledger_sum(rows))
