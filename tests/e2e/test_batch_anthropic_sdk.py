"""Anthropic's Message Batches on the batch engine, driven by the official anthropic SDK against a
real `margin serve` and the fake upstream: create with inline requests, poll, results as JSONL
(succeeded and errored), list, cancel; a bad request is a 400 in Anthropic's envelope at once, and
results of a batch still processing are a clear 4xx."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest
from anthropic.types.messages import MessageBatch

from tests.e2e.batch_env import batch_config
from tests.support.processes import fake_upstream, gateway


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[anthropic.Anthropic]:
    tmp: Path = tmp_path_factory.mktemp("anthropic-batches")
    with fake_upstream("--fault", "fake-batch-slow=delay=0.25") as upstream:
        config = batch_config(upstream, concurrency=2)
        with gateway(config, tmp, env={"FAKE_UPSTREAM_KEY": "sk-fake-secret-123"}) as url:
            yield anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)


def request(
    custom_id: str, text: str, model: str = "claude-sonnet"
) -> anthropic.types.messages.batch_create_params.Request:
    return {
        "custom_id": custom_id,
        "params": {"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": text}]},
    }


def ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 60) -> MessageBatch:
    deadline = time.monotonic() + timeout
    while (batch := client.messages.batches.retrieve(batch_id)).processing_status != "ended":
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)
    return batch


def test_a_message_batch_runs_and_its_results_stream_back(client: anthropic.Anthropic) -> None:
    requests = [request(f"m-{n}", f"anthropic line {n}") for n in range(8)]
    requests.append(request("missing-model", "hello", model="no-such-model"))
    created = client.messages.batches.create(requests=requests)
    assert created.id.startswith("msgbatch_") and created.processing_status == "in_progress"
    assert created.results_url is None
    batch = ended(client, created.id)
    counts = batch.request_counts
    assert (counts.succeeded, counts.errored, counts.processing, counts.canceled, counts.expired) == (8, 1, 0, 0, 0)
    assert batch.ended_at is not None and batch.results_url is not None
    results = {r.custom_id: r.result for r in client.messages.batches.results(created.id)}
    assert set(results) == {f"m-{n}" for n in range(8)} | {"missing-model"}
    first = results["m-0"]
    assert first.type == "succeeded" and first.message.content[0].type == "text"
    assert first.message.content[0].text == "anthropic line 0"
    failed = results["missing-model"]
    assert failed.type == "errored" and failed.error.error.type == "not_found_error"
    listed = client.messages.batches.list(limit=5)
    assert created.id in [b.id for b in listed.data]
    with pytest.raises(anthropic.APIStatusError) as refused:
        client.messages.batches.cancel(created.id)
    assert refused.value.status_code == 409


def test_cancel_mid_batch_ends_the_rest_as_canceled(client: anthropic.Anthropic) -> None:
    requests = [request(f"s-{n}", f"slow {n}", model="batch-slow") for n in range(20)]
    created = client.messages.batches.create(requests=requests)
    # The SDK will not ask before the batch ended; asked anyway, margin says why in Anthropic's envelope.
    early = httpx.get(f"{str(client.base_url).rstrip('/')}/v1/messages/batches/{created.id}/results")
    assert early.status_code == 409 and early.json()["error"]["type"] == "invalid_request_error"
    assert "still in_progress" in early.json()["error"]["message"]
    time.sleep(0.6)
    cancelling = client.messages.batches.cancel(created.id)
    assert cancelling.processing_status in ("canceling", "ended") and cancelling.cancel_initiated_at is not None
    batch = ended(client, created.id)
    counts = batch.request_counts
    assert counts.canceled > 0 and counts.succeeded + counts.canceled == 20
    types = [r.result.type for r in client.messages.batches.results(created.id)]
    assert types.count("succeeded") == counts.succeeded and types.count("canceled") == counts.canceled


def test_a_bad_request_is_refused_at_once_in_anthropics_envelope(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.batches.create(requests=[request("a", "x"), request("a", "y")])
    assert "used twice" in str(bad.value) and bad.value.body["type"] == "error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match=r"requests\.0\.params"):
        client.messages.batches.create(requests=[{"custom_id": "a", "params": {"model": "claude-sonnet"}}])  # type: ignore[typeddict-item]
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_nope")
