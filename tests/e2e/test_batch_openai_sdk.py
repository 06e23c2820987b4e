"""The batch tier end to end: the official openai SDK (files.create, batches.create, polling
batches.retrieve, files.content) against a real `margin serve` in front of the fake upstream.
Lines run through the pipeline (ledger rows tagged with the batch, at endpoint class `batch`), bad
lines fail the batch naming each one, bad requests get a clear 4xx, a cancelled batch delivers what
finished."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.batch_env import (
    batch_config,
    chat_line,
    fake_calls,
    file_lines,
    jsonl,
    ledger_rows,
    settled_ledger_rows,
    upload,
    wait_for,
)
from tests.support.processes import fake_upstream, gateway

MAX_FILE_BYTES = 300_000


@pytest.fixture(scope="module")
def batch_upstream() -> Iterator[str]:
    with fake_upstream("--fault", "fake-batch-slow=delay=0.25") as url:
        yield url


@pytest.fixture(scope="module")
def served(batch_upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("batch-gateway")
    config = batch_config(batch_upstream, concurrency=2, extra_batch=f", max_file_bytes: {MAX_FILE_BYTES}")
    with gateway(config, tmp, env={"FAKE_UPSTREAM_KEY": "sk-fake-secret-123"}) as url:
        yield url, tmp / "data"


@pytest.fixture
def client(served: tuple[str, Path]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served[0]}/v1", api_key="unused", max_retries=0)


def test_a_batch_runs_every_line_once_through_the_pipeline(client: openai.OpenAI, served: tuple[str, Path]) -> None:
    lines = [chat_line(f"q-{n}", f"question number {n}") for n in range(30)]
    file_id = upload(client, jsonl(lines))
    created = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"job": "nightly"}
    )
    assert created.status == "validating" and created.metadata == {"job": "nightly"}
    batch = wait_for(client, created.id)
    assert batch.status == "completed" and batch.error_file_id is None
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (30, 30, 0)
    assert batch.in_progress_at and batch.finalizing_at and batch.completed_at and batch.expires_at
    out = file_lines(client, batch.output_file_id)
    assert sorted(line["custom_id"] for line in out) == sorted(f"q-{n}" for n in range(30))
    for line in out:
        assert line["id"].startswith("batch_req_") and line["error"] is None
        assert line["response"]["status_code"] == 200
        answer = line["response"]["body"]["choices"][0]["message"]["content"]
        assert answer == f"question number {line['custom_id'].removeprefix('q-')}"
    rows = settled_ledger_rows(served[1], batch.id, len(out))
    assert sorted(r["request_id"] for r in rows) == sorted(line["response"]["request_id"] for line in out)
    assert {r["endpoint_class"] for r in rows} == {"batch"} and {r["status"] for r in rows} == {"ok"}
    extension = batch.model_extra["margin"] if batch.model_extra else {}
    assert Decimal(extension["cost_usd"]) == sum((Decimal(r["cost_total"]) for r in rows), Decimal(0)) > 0
    page = client.batches.list(limit=1)
    assert page.data[0].id == batch.id and page.has_more in (True, False)
    nothing = httpx.post(f"{served[0]}/v1/batches/{batch.id}/retry_failed")
    assert nothing.status_code == 409 and _error(nothing)["code"] == "nothing_to_retry"


def test_a_line_the_gateway_refuses_goes_to_the_error_file(client: openai.OpenAI) -> None:
    lines = [chat_line("good", "fine"), chat_line("unknown-model", "hi", model="no-such-model")]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)), endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for(client, batch.id)
    assert batch.status == "completed" and batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 1)
    [error] = file_lines(client, batch.error_file_id)
    assert error["custom_id"] == "unknown-model" and error["error"] is None
    assert error["response"]["status_code"] == 404
    assert error["response"]["body"]["error"]["code"] == "model_not_found"
    assert [line["custom_id"] for line in file_lines(client, batch.output_file_id)] == ["good"]
    # retry_failed (a margin extension): a new batch of the failed line only; the success is kept.
    retried = client.post(f"/batches/{batch.id}/retry_failed", cast_to=openai.types.Batch, body={})
    assert retried.id != batch.id and retried.status == "validating"
    retried_input = [json.loads(line) for line in client.files.content(retried.input_file_id).text.splitlines()]
    assert [line["custom_id"] for line in retried_input] == ["unknown-model"]
    again = wait_for(client, retried.id)
    assert again.request_counts is not None and (again.request_counts.total, again.request_counts.failed) == (1, 1)


def test_malformed_lines_fail_the_batch_and_each_is_named(client: openai.OpenAI, served: tuple[str, Path]) -> None:
    lines = [
        json.dumps(chat_line("a", "one")),
        "{not json",
        json.dumps(chat_line("a", "again")),
        json.dumps(chat_line("c", "x", url="/v1/embeddings")),
        json.dumps(chat_line("d", "x", method="GET")),
        json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o"}}),
        json.dumps(chat_line("f", "x", body={"model": "gpt-4o", "messages": [], "stream": True})),
    ]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)), endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = wait_for(client, batch.id)
    assert batch.status == "failed" and batch.failed_at and batch.errors and batch.errors.data
    named = [(e.line, e.code, e.param) for e in batch.errors.data]
    assert named == [
        (2, "invalid_json_line", None),
        (3, "duplicate_custom_id", "custom_id"),
        (4, "url_mismatch", "url"),
        (5, "invalid_method", "method"),
        (6, "invalid_request", "body.messages"),
        (7, "invalid_request", "body.stream"),
    ]
    assert batch.output_file_id is None and ledger_rows(served[1], batch.id) == []


def _error(response: httpx.Response) -> dict[str, str]:
    body: dict[str, dict[str, str]] = response.json()
    return body["error"]


def test_bad_requests_get_a_clear_4xx_in_the_openai_envelope(client: openai.OpenAI, served: tuple[str, Path]) -> None:
    url = served[0]
    unknown = httpx.post(f"{url}/v1/batches", json={"input_file_id": "file-nope", "endpoint": "/v1/chat/completions",
                                                   "completion_window": "24h"})  # fmt: skip
    assert unknown.status_code == 404 and _error(unknown)["code"] == "file_not_found"
    wrong_purpose = httpx.post(f"{url}/v1/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "fine-tune"})
    assert wrong_purpose.status_code == 400 and _error(wrong_purpose)["param"] == "purpose"
    not_jsonl = httpx.post(
        f"{url}/v1/files", files={"file": ("a.jsonl", b"col1,col2\n1,2\n")}, data={"purpose": "batch"}
    )
    assert not_jsonl.status_code == 400 and "JSONL" in _error(not_jsonl)["message"]
    big = jsonl([chat_line(f"n{n}", "x" * 1000) for n in range(MAX_FILE_BYTES // 1000 + 10)])
    oversized = httpx.post(f"{url}/v1/files", files={"file": ("a.jsonl", big)}, data={"purpose": "batch"})
    assert oversized.status_code == 413 and _error(oversized)["code"] == "payload_too_large"
    file_id = upload(client, jsonl([chat_line("a", "x")]))
    with pytest.raises(openai.BadRequestError, match="not supported"):
        client.batches.create(input_file_id=file_id, endpoint="/v1/moderations", completion_window="24h")  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="completion_window"):
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="7d")  # type: ignore[arg-type]
    batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h")
    finished = wait_for(client, batch.id)
    with pytest.raises(openai.ConflictError, match="completed"):
        client.batches.cancel(finished.id)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_does_not_exist")
    # Nothing accepted was lost on the way: the finished batch is intact.
    assert client.batches.retrieve(batch.id).status == "completed"
    files = {f.id for f in client.files.list().data}
    assert file_id in files and finished.output_file_id in files


def test_another_key_sees_none_of_a_keys_files_or_batches(served: tuple[str, Path]) -> None:
    """With no key store configured every caller is the anonymous principal; ownership is by key id,
    so this checks the lookups are scoped: a made-up id of the right shape is simply not found."""
    url = served[0]
    response = httpx.get(f"{url}/v1/files/file-000000000000000000000000/content")
    assert response.status_code == 404 and _error(response)["code"] == "file_not_found"


def test_cancel_mid_batch_stops_new_lines_and_delivers_what_finished(
    client: openai.OpenAI, served: tuple[str, Path], batch_upstream: str
) -> None:
    before = fake_calls(batch_upstream, "fake-batch-slow")
    lines = [chat_line(f"s-{n}", f"slow {n}", model="batch-slow") for n in range(40)]
    batch = client.batches.create(
        input_file_id=upload(client, jsonl(lines)), endpoint="/v1/chat/completions", completion_window="24h"
    )
    running = wait_for(client, batch.id, ("in_progress",))
    while running.request_counts is None or running.request_counts.completed < 4:
        running = client.batches.retrieve(batch.id)
    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    ended = wait_for(client, batch.id)
    assert ended.status == "cancelled" and ended.cancelled_at and ended.request_counts is not None
    done = file_lines(client, ended.output_file_id)
    unrun = file_lines(client, ended.error_file_id)
    assert Counter(line["custom_id"] for line in done + unrun) == Counter(f"s-{n}" for n in range(40))
    assert len(done) == ended.request_counts.completed < 40
    assert {line["error"]["code"] for line in unrun} == {"batch_cancelled"}
    assert all(line["response"] is None for line in unrun)
    # What ran is what the upstream saw, and at most the lines in flight at the cancel ran after it.
    assert fake_calls(batch_upstream, "fake-batch-slow") - before == len(done)
    assert cancelling.request_counts is not None
    assert len(done) <= cancelling.request_counts.completed + 2  # concurrency 2: at most 2 in flight
    assert len(settled_ledger_rows(served[1], batch.id, len(done))) == len(done)
    retried = client.post(f"/batches/{batch.id}/retry_failed", cast_to=openai.types.Batch, body={})
    rerun = wait_for(client, retried.id)
    assert rerun.status == "completed" and rerun.request_counts is not None
    assert rerun.request_counts.completed == rerun.request_counts.total == 40 - len(done)
    rerun_ids = {line["custom_id"] for line in file_lines(client, rerun.output_file_id)}
    assert rerun_ids | {line["custom_id"] for line in done} == {f"s-{n}" for n in range(40)}
