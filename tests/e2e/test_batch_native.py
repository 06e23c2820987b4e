"""`native` batches end to end: the official SDKs submit to margin, margin hands the batch to the fake
upstream's own Batch API (OpenAI Files + Batches, Anthropic Message Batches) over real HTTP, polls it,
and maps the answers back: every custom_id once, each line run once upstream and never as a live
call, one ledger row per line at half the catalog price (the batch multiplier), cancel forwarded,
a batch whose lines go to two deployments runs `local`, and a gateway killed with -9 mid-batch
resumes polling after a restart without submitting the batch again."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import fake_config
from tests.e2e.batch_env import chat_line, file_lines, jsonl, settled_ledger_rows, upload, wait_for
from tests.support.processes import fake_upstream, gateway_process

# gpt-4o-mini's catalog price (src/margin/metering/prices.yaml), USD per million tokens, and its batch multiplier.
MINI_INPUT, MINI_OUTPUT, HALF = Decimal("0.15"), Decimal("0.60"), Decimal("0.5")


def native_config(upstream: str) -> str:
    deployments = f"""  - name: fake-native-oa
    provider: openai_compat
    model: gpt-4o-mini
    base_url: {upstream}/v1
    api_key: env:FAKE_UPSTREAM_KEY
  - name: fake-native-claude
    provider: anthropic
    model: claude-3-5-haiku
    base_url: {upstream}
    api_key: env:FAKE_UPSTREAM_KEY
"""
    config = fake_config(upstream, deployments)
    config += (
        "  - name: mini\n    deployments: [fake-native-oa]\n  - name: haiku\n    deployments: [fake-native-claude]\n"
    )
    return config + (
        "batch: {lease_s: 3, poll_s: 0.05, native_poll_s: 0.2, "
        "native_deployments: [fake-native-oa, fake-native-claude]}\n"
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with fake_upstream() as url:
        yield url


@pytest.fixture(scope="module")
def served(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("native-gateway")
    with gateway_process(native_config(upstream), tmp, env={"FAKE_UPSTREAM_KEY": "sk-fake-secret-123"}) as (url, _):
        yield url, tmp / "data"


@pytest.fixture
def client(served: tuple[str, Path]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served[0]}/v1", api_key="unused", max_retries=0)


def _fake(upstream: str) -> dict[str, Any]:
    return {"batch": httpx.get(f"{upstream}/_fake/batches").json(), "live": httpx.get(f"{upstream}/_fake/stats").json()}


def _delay(upstream: str, seconds: float) -> None:
    httpx.post(f"{upstream}/_fake/batches", json={"line_delay_s": seconds}).raise_for_status()


def test_an_openai_batch_goes_to_the_providers_batch_api_at_half_price(
    client: openai.OpenAI, served: tuple[str, Path], upstream: str
) -> None:
    before = _fake(upstream)
    lines = [chat_line(f"n{i}", f"native question {i}", model="mini") for i in range(6)]
    batch = client.batches.create(input_file_id=upload(client, jsonl(lines)), endpoint="/v1/chat/completions",
                                  completion_window="24h")  # fmt: skip
    done = wait_for(client, batch.id)
    after = _fake(upstream)
    assert done.status == "completed" and done.request_counts is not None and done.request_counts.completed == 6
    out = file_lines(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in out) == [f"n{i}" for i in range(6)]
    assert {line["response"]["body"]["model"] for line in out} == {"gpt-4o-mini"}
    ran = after["batch"]["lines_run"].get("gpt-4o-mini", 0) - before["batch"]["lines_run"].get("gpt-4o-mini", 0)
    assert ran == 6 and after["live"]["calls"].get("gpt-4o-mini", 0) == 0  # the provider's batch ran them, once
    rows = settled_ledger_rows(served[1], batch.id, 6)
    assert len(rows) == 6 and {r["deployment"] for r in rows} == {"fake-native-oa"}
    assert {r["request_id"] for r in rows} == {line["response"]["request_id"] for line in out}
    for row in rows:
        half = (row["input_uncached"] * MINI_INPUT + row["output"] * MINI_OUTPUT) / 1_000_000 * HALF
        assert Decimal(str(row["cost_total"])) == half and half > 0 and row["batch"]
    extension = client.batches.retrieve(batch.id).model_extra or {}
    assert Decimal(extension["margin"]["cost_usd"]) == sum(Decimal(str(r["cost_total"])) for r in rows)


def test_anthropic_message_batches_go_native_too(served: tuple[str, Path], upstream: str) -> None:
    client = anthropic.Anthropic(base_url=served[0], api_key="unused", max_retries=0)
    requests: list[Any] = [
        {"custom_id": f"h{i}", "params": {"model": "haiku", "max_tokens": 32,
                                          "messages": [{"role": "user", "content": f"haiku {i}"}]}}
        for i in range(3)
    ]  # fmt: skip
    before = _fake(upstream)["batch"]["lines_run"].get("claude-3-5-haiku", 0)
    batch = client.messages.batches.create(requests=requests)
    for _ in range(300):
        if client.messages.batches.retrieve(batch.id).processing_status == "ended":
            break
        time.sleep(0.1)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert sorted(results) == ["h0", "h1", "h2"] and {r.type for r in results.values()} == {"succeeded"}
    assert _fake(upstream)["batch"]["lines_run"].get("claude-3-5-haiku", 0) - before == 3


def test_a_batch_for_two_deployments_runs_local(client: openai.OpenAI, upstream: str) -> None:
    before = _fake(upstream)["batch"]["lines_run"]
    lines = [chat_line("a", "to mini", model="mini"), chat_line("b", "to gpt-4o", model="gpt-4o")]
    batch = client.batches.create(input_file_id=upload(client, jsonl(lines)), endpoint="/v1/chat/completions",
                                  completion_window="24h")  # fmt: skip
    done = wait_for(client, batch.id)
    assert done.status == "completed" and done.request_counts is not None and done.request_counts.completed == 2
    assert _fake(upstream)["batch"]["lines_run"] == before  # no provider batch: each line ran live


def test_cancel_is_forwarded_and_what_finished_is_delivered(client: openai.OpenAI, upstream: str) -> None:
    _delay(upstream, 0.05)
    try:
        lines = [chat_line(f"c{i}", f"cancel me {i}", model="mini") for i in range(60)]
        batch = client.batches.create(input_file_id=upload(client, jsonl(lines)), endpoint="/v1/chat/completions",
                                      completion_window="24h")  # fmt: skip
        wait_for(client, batch.id, ("in_progress",))
        time.sleep(0.8)
        client.batches.cancel(batch.id)
        done = wait_for(client, batch.id)
    finally:
        _delay(upstream, 0.0)
    assert done.status == "cancelled" and done.request_counts is not None
    out, err = file_lines(client, done.output_file_id), file_lines(client, done.error_file_id)
    assert sorted(line["custom_id"] for line in out + err) == sorted(f"c{i}" for i in range(60))
    assert 0 < len(out) < 60 and {e["error"]["code"] for e in err} == {"batch_cancelled"}


def test_a_killed_gateway_resumes_polling_without_submitting_again(upstream: str, tmp_path: Path) -> None:
    env = {"FAKE_UPSTREAM_KEY": "sk-fake-secret-123"}
    data = tmp_path / "data"
    _delay(upstream, 0.05)
    try:
        with gateway_process(native_config(upstream), tmp_path, env=env) as (url, process):
            first = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            lines = [chat_line(f"k{i}", f"kill {i}", model="mini") for i in range(30)]
            batches_before = _fake(upstream)["batch"]["batches"]
            batch = first.batches.create(input_file_id=upload(first, jsonl(lines)), endpoint="/v1/chat/completions",
                                         completion_window="24h")  # fmt: skip
            wait_for(first, batch.id, ("in_progress",))

            time.sleep(0.6)  # submitted (native_poll_s 0.2), still running at the provider
            submitted = _fake(upstream)["batch"]["batches"] - batches_before
            process.send_signal(signal.SIGKILL)
            process.wait()
        with gateway_process(native_config(upstream), tmp_path, env={**env, "MARGIN_DATA_DIR": str(data)}) as (url, _):
            second = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            done = wait_for(second, batch.id)
            out = file_lines(second, done.output_file_id)
            rows = settled_ledger_rows(data, batch.id, 30)
    finally:
        _delay(upstream, 0.0)
    assert submitted == 1 and _fake(upstream)["batch"]["batches"] - batches_before == 1  # not submitted again
    assert done.status == "completed" and sorted(line["custom_id"] for line in out) == sorted(
        f"k{i}" for i in range(30)
    )
    assert len(rows) == 30 and len({r["request_id"] for r in rows}) == 30
