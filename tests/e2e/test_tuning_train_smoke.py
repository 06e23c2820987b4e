"""The distillation pipeline for real, small (docs/tuning.md, "Training"): a tickets dataset, a LoRA
job in its worker process through `margin tune train`, a kill -9 of that worker mid-run, `margin tune
resume` from the newest complete checkpoint, llama.cpp's conversion, and the adapter served on
margin's local tier next to the bare model. Then what must fail cleanly: a base model that cannot
load and a disk that fills (a file-size limit on the worker: the kernel answers EFBIG as it would
ENOSPC), each leaving the job failed with the reason and no adapter."""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import openai
import pytest

from margin.tuning import jobs
from margin.tuning.examples import tickets
from tests.conftest import HAS_LOCAL_MODEL
from tests.support.processes import gateway

HAS_TUNE = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "peft", "trl"))
pytestmark = [
    pytest.mark.local_model,
    pytest.mark.slow,
    pytest.mark.skipif(not (HAS_LOCAL_MODEL and HAS_TUNE), reason="needs the 'local' and 'tune' extras"),
]
SMALL = ["--batch-size", "1", "--max-length", "96", "--rank", "4", "--alpha", "16", "--learning-rate", "0.002",
         "--nice", "0", "--threads", "1"]  # fmt: skip


def _margin(data_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "margin", "tune", *args, "--data-dir", str(data_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tune")
    tickets.write(root, "tickets", tickets.generate(12, 2, 6, seed=5), seed=5)
    return root


def _wait_for(condition: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def resumed_job(data_dir: Path) -> Iterator[Path]:
    started = _margin(
        data_dir, "train", "--dataset", "tickets", "--steps", "6", "--save-steps", "2", *SMALL, "--detach"
    )
    assert started.returncode == 0, started.stderr
    job = jobs.jobs_root(data_dir) / started.stdout.strip()
    first = job / jobs.CHECKPOINTS / "checkpoint-2" / "trainer_state.json"
    _wait_for(first.is_file, "checkpoint-2", timeout=240)
    record = jobs.read_job(job)
    assert record.pid is not None and record.state == "running"
    os.kill(record.pid, signal.SIGKILL)  # mid-run: steps 3-6 are still to come
    _wait_for(lambda: json.loads(_margin(data_dir, "status", job.name).stdout)["state"] == "interrupted", "kill", 30)
    assert jobs.read_job(job).step < 6
    assert not (job / jobs.ADAPTER_GGUF).exists()

    resumed = _margin(data_dir, "resume", job.name)
    assert resumed.returncode == 0, resumed.stderr + (job / "worker.log").read_text()
    assert resumed.stdout.strip() == str(job / jobs.ADAPTER_GGUF)
    yield job


def test_a_killed_job_resumes_from_its_last_checkpoint(resumed_job: Path) -> None:
    record = jobs.read_job(resumed_job)
    assert record.state == "succeeded" and record.error is None
    assert record.attempts == 2
    assert record.resumed_from is not None and int(record.resumed_from.rsplit("-", 1)[1]) >= 2
    assert record.step == 6
    assert (resumed_job / jobs.ADAPTER_GGUF).stat().st_size > 0


def test_the_adapter_serves_on_the_local_tier_and_changes_answers(resumed_job: Path, tmp_path: Path) -> None:
    """Both local engines apply `lora_path`: the student answers alike on each, and unlike the base."""
    adapter = resumed_job / jobs.ADAPTER_GGUF
    local = '{name: %s, provider: local, model: SmolLM2-135M-Instruct, price: {input: "0", output: "0"}, local: {%s}}'
    deployments = {
        "base": "n_ctx: 512, seed: 1",
        "student": f'n_ctx: 512, seed: 1, lora_path: "{adapter}"',
        "student-slots": f'engine: slots, n_ctx: 512, seed: 1, lora_path: "{adapter}"',
    }
    config = "deployments:\n" + "".join(f"  - {local % (n, s)}\n" for n, s in deployments.items())
    config += "models:\n" + "".join(f"  - {{name: {n}, deployments: [{n}]}}\n" for n in deployments)
    test = tickets.generate(12, 2, 6, seed=5)["test"]
    answers: dict[str, list[str]] = {name: [] for name in deployments}
    with gateway(config, tmp_path, timeout=120, ready_path="/readyz") as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=120)
        for model, out in answers.items():
            for ticket in test[:3]:
                completion = client.chat.completions.create(
                    model=model, messages=cast(Any, tickets.messages(ticket.text)), max_tokens=12, temperature=0
                )
                assert completion.choices[0].message.content
                out.append(completion.choices[0].message.content)
    assert answers["student"] != answers["base"], answers
    assert answers["student"] == answers["student-slots"], answers


def test_a_base_model_that_cannot_load_fails_the_job(data_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + os.urandom(256))
    done = _margin(
        data_dir, "train", "--dataset", "tickets", "--base", str(broken), "--steps", "2", "--save-steps", "1"
    )
    assert done.returncode == 1
    assert f"base model {broken}: transformers cannot load it" in done.stderr
    failed = next(r for r in jobs.list_jobs(data_dir) if r.base == str(broken))
    assert failed.state == "failed" and failed.error is not None and "cannot load" in failed.error
    assert not (jobs.jobs_root(data_dir) / failed.id / jobs.ADAPTER_GGUF).exists()


def test_a_disk_that_fills_fails_the_job_with_the_reason(data_dir: Path) -> None:
    from margin.tuning.launch import create
    from margin.tuning.settings import TrainSettings

    settings = TrainSettings(steps=2, save_steps=1, batch_size=1, max_length=64, rank=4, nice=0, threads=1)
    job = create(data_dir, dataset="tickets", base="local", settings=settings)

    def small_disk() -> None:  # the tokenizer (3.5 MB) saved beside the job goes past 1 MB
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    done = subprocess.run(
        [sys.executable, "-m", "margin.tuning.worker", str(job)],
        preexec_fn=small_disk, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    record = jobs.read_job(job)
    assert record.state == "failed"
    assert record.error is not None and record.error.startswith("the disk filled while writing"), record.error
    assert "File too large" in record.error
    assert not (job / jobs.ADAPTER_GGUF).exists()
