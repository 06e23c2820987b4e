"""The fake upstream's own batch APIs (OpenAI Files + Batches, Anthropic Message Batches), driven by
the official SDKs over real HTTP against the `margin fake-upstream` process: what margin's `native`
batch mode will talk to. Each line is run upstream once, answers come back in the providers' shapes,
and a cancel mid-batch delivers what finished."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anthropic
import httpx
import openai
import pytest

from tests.support.processes import fake_upstream

T = TypeVar("T")


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    with fake_upstream() as url:
        yield url


def _wait(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def _lines(model: str, count: int, url: str = "/v1/chat/completions") -> bytes:
    rows = [
        {"custom_id": f"{model}-{n}", "method": "POST", "url": url,
         "body": {"model": model, "messages": [{"role": "user", "content": f"say {n}"}], "max_tokens": 16}}
        for n in range(count)
    ]  # fmt: skip
    return "\n".join(json.dumps(r) for r in rows).encode() + b"\n"


def _delay(fake: str, seconds: float) -> None:
    httpx.post(f"{fake}/_fake/batches", json={"line_delay_s": seconds}).raise_for_status()


def _lines_run(fake: str) -> dict[str, Any]:
    return dict(httpx.get(f"{fake}/_fake/batches").json()["lines_run"])


def test_openai_sdk_files_and_batches(fake: str) -> None:
    _delay(fake, 0.0)
    client = openai.OpenAI(base_url=f"{fake}/v1", api_key="sk-fake")
    uploaded = client.files.create(file=("in.jsonl", _lines("oa-model", 5)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(_lines("oa-model", 5))
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", metadata={"job": "t"})  # fmt: skip
    assert batch.status == "in_progress" and batch.metadata == {"job": "t"}
    done = _wait(lambda: client.batches.retrieve(batch.id), lambda b: b.status == "completed")
    assert done.status == "completed" and done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (5, 5, 0)
    assert done.output_file_id is not None and done.error_file_id is None and done.completed_at is not None
    out = [json.loads(line) for line in client.files.content(done.output_file_id).text.splitlines()]
    assert sorted(line["custom_id"] for line in out) == [f"oa-model-{n}" for n in range(5)]
    first = out[0]["response"]
    assert first["status_code"] == 200 and first["body"]["object"] == "chat.completion"
    assert first["body"]["usage"]["prompt_tokens"] > 0 and out[0]["error"] is None
    assert _lines_run(fake)["oa-model"] == 5  # each line ran upstream once


def test_openai_batch_with_a_bad_line_and_a_cancel_mid_batch(fake: str) -> None:
    client = openai.OpenAI(base_url=f"{fake}/v1", api_key="sk-fake")
    bad = _lines("oa-bad", 1).replace(b'"messages": [{"role": "user", "content": "say 0"}], ', b"")
    good = client.files.create(file=("in.jsonl", _lines("oa-ok", 1) + bad.replace(b"oa-bad-0", b"x")), purpose="batch")
    done = _wait(
        lambda: client.batches.retrieve(
            client.batches.create(input_file_id=good.id, endpoint="/v1/chat/completions", completion_window="24h").id
        ),
        lambda b: b.status == "completed",
    )
    assert done.request_counts is not None and (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    assert done.error_file_id is not None
    error_line = json.loads(client.files.content(done.error_file_id).text)
    assert error_line["custom_id"] == "x" and error_line["response"]["status_code"] == 400
    _delay(fake, 0.05)
    try:
        slow = client.files.create(file=("slow.jsonl", _lines("oa-slow", 40)), purpose="batch")
        batch = client.batches.create(input_file_id=slow.id, endpoint="/v1/chat/completions", completion_window="24h")
        time.sleep(0.3)
        assert client.batches.cancel(batch.id).status == "cancelling"
        ended = _wait(lambda: client.batches.retrieve(batch.id), lambda b: b.status == "cancelled")
    finally:
        _delay(fake, 0.0)
    assert ended.status == "cancelled" and ended.request_counts is not None
    ran = ended.request_counts.completed
    assert 0 < ran < 40 and _lines_run(fake)["oa-slow"] == ran
    assert ended.error_file_id is not None
    unrun = [json.loads(line) for line in client.files.content(ended.error_file_id).text.splitlines()]
    assert len(unrun) == 40 - ran and {line["error"]["code"] for line in unrun} == {"batch_cancelled"}
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_anthropic_sdk_message_batches(fake: str) -> None:
    _delay(fake, 0.0)
    client = anthropic.Anthropic(base_url=fake, api_key="sk-ant-fake")
    requests: list[Any] = [
        {"custom_id": f"a-{n}", "params": {"model": "an-model", "max_tokens": 16,
                                           "messages": [{"role": "user", "content": f"say {n}"}]}}
        for n in range(4)
    ] + [{"custom_id": "broken", "params": {"model": "an-model", "max_tokens": 16}}]  # fmt: skip
    batch = client.messages.batches.create(requests=requests)
    assert batch.processing_status == "in_progress" and batch.id.startswith("msgbatch_")
    done = _wait(lambda: client.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended")
    assert done.processing_status == "ended" and done.results_url is not None
    assert (done.request_counts.succeeded, done.request_counts.errored) == (4, 1)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert set(results) == {"a-0", "a-1", "a-2", "a-3", "broken"}
    succeeded = results["a-0"]
    assert succeeded.type == "succeeded" and succeeded.message.usage.input_tokens > 0
    assert results["broken"].type == "errored"
    assert _lines_run(fake)["an-model"] == 5
