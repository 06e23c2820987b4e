"""`margin batch` against a real `margin serve`: submit (streamed upload) --wait, status, list, results
(output and errors), cancel of a finished batch refused with the gateway's message, retry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.batch_env import batch_config, chat_line, jsonl
from tests.support.cli import run_margin
from tests.support.processes import fake_upstream, gateway


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("batch-cli")
    with fake_upstream() as upstream, gateway(batch_config(upstream), tmp, env={"FAKE_UPSTREAM_KEY": "sk-x"}) as served:
        yield served


def test_submit_wait_results_and_retry_from_the_command_line(url: str, tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_bytes(jsonl([chat_line(f"cli-{n}", f"from the cli {n}") for n in range(12)]
                               + [chat_line("bad", "x", model="no-such-model")]))  # fmt: skip
    submitted = run_margin("batch", "submit", requests, "--wait", "--metadata", "job=cli", "--url", url,
                           data_dir=tmp_path)  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    batch_id = submitted.stdout.split(":")[0]
    assert batch_id.startswith("batch_") and "completed | 12/13 succeeded, 1 failed | cost $" in submitted.stdout
    out = tmp_path / "answers.jsonl"
    fetched = run_margin("batch", "results", batch_id, "--out", out, "--url", url, data_dir=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    answers = {line["custom_id"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert sorted(answers) == sorted(f"cli-{n}" for n in range(12))
    errors = run_margin("batch", "results", batch_id, "--errors", "--url", url, data_dir=tmp_path)
    assert [json.loads(line)["custom_id"] for line in errors.stdout.splitlines()] == ["bad"]
    status = run_margin("batch", "status", batch_id, "--url", url, data_dir=tmp_path)
    assert status.returncode == 0 and "output_file: file-" in status.stdout
    listed = run_margin("batch", "list", "--url", url, data_dir=tmp_path)
    assert batch_id in listed.stdout and "/v1/chat/completions" in listed.stdout
    refused = run_margin("batch", "cancel", batch_id, "--url", url, data_dir=tmp_path)
    assert refused.returncode == 1 and "409" in refused.stderr and "completed" in refused.stderr
    retried = run_margin("batch", "retry", batch_id, "--wait", "--url", url, data_dir=tmp_path)
    assert retried.returncode == 0, retried.stderr
    assert "(retry of " + batch_id + ")" in retried.stdout and "0/1 succeeded, 1 failed" in retried.stdout


def test_a_file_the_gateway_refuses_is_reported_not_a_traceback(url: str, tmp_path: Path) -> None:
    requests = tmp_path / "requests.txt"
    requests.write_text("not jsonl\n")
    refused = run_margin("batch", "submit", requests, "--url", url, data_dir=tmp_path)
    assert refused.returncode == 1 and "400" in refused.stderr and "JSONL" in refused.stderr
    assert "Traceback" not in refused.stderr
