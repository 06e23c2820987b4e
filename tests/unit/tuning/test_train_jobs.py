"""Training jobs without training: settings, the job file, checkpoint choice, locks, the off-peak
window, and the refusals that come before any model is loaded."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zipfile
from datetime import datetime, time
from pathlib import Path

import pytest
from pydantic import ValidationError

from margin.tuning import jobs
from margin.tuning.checkpoints import latest_complete, problem
from margin.tuning.errors import DatasetError, JobBusy, JobNotFound, TrainingError
from margin.tuning.examples import tickets
from margin.tuning.launch import adapter_of, create, prepare_resume, view
from margin.tuning.schedule import job_lock, machine_slot, wait_for_window, worker_alive
from margin.tuning.settings import TrainSettings, in_window


def _dataset(data_dir: Path, name: str = "tickets", train: int = 12) -> None:
    tickets.write(data_dir, name, tickets.generate(train, 2, 6, seed=3), seed=3)


def test_settings_are_strict_and_checked() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TrainSettings.model_validate({"ranks": 8})
    with pytest.raises(ValidationError, match="no checkpoint would be saved"):
        TrainSettings(steps=10, save_steps=20)
    with pytest.raises(ValidationError, match="HH:MM-HH:MM"):
        TrainSettings(window="10pm-6am")
    assert TrainSettings(window="22:00-06:00").window_bounds() == (time(22), time(6))


@pytest.mark.parametrize(
    ("window", "now", "inside"),
    [("22:00-06:00", time(23, 30), True), ("22:00-06:00", time(5, 59), True), ("22:00-06:00", time(6), False),
     ("09:00-17:00", time(12), True), ("09:00-17:00", time(8, 59), False), (None, time(12), True)],
)  # fmt: skip
def test_the_window_may_wrap_midnight(window: str | None, now: time, inside: bool) -> None:
    assert in_window(TrainSettings(window=window).window_bounds(), now) is inside


def test_the_job_file_is_replaced_whole(tmp_path: Path) -> None:
    _dataset(tmp_path)
    job = create(
        tmp_path, dataset="tickets", base=str(_fake_gguf(tmp_path)), settings=TrainSettings(steps=2, save_steps=1)
    )
    record = jobs.update_job(job, state="running", step=1)
    assert jobs.read_job(job) == record
    assert [p.name for p in job.iterdir()] == [jobs.JOB_FILE]  # no temporary file left beside it
    assert jobs.list_jobs(tmp_path)[0].id == job.name
    (job / jobs.JOB_FILE).write_text("{not json")
    with pytest.raises(TrainingError, match="not JSON"):
        jobs.read_job(job)


def _fake_gguf(where: Path) -> Path:
    path = where / "broken.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 64)
    return path


def test_an_empty_or_tiny_dataset_is_refused_before_any_model_loads(tmp_path: Path) -> None:
    _dataset(tmp_path, "tiny", train=3)
    with pytest.raises(DatasetError, match="'tiny' has 3 training example"):
        create(tmp_path, dataset="tiny", base="local", settings=TrainSettings())
    with pytest.raises(DatasetError, match="no dataset at"):
        create(tmp_path, dataset="missing", base="local", settings=TrainSettings())
    assert not jobs.jobs_root(tmp_path).exists()


def test_a_missing_base_model_is_refused(tmp_path: Path) -> None:
    _dataset(tmp_path)
    with pytest.raises(TrainingError, match="no GGUF file at"):
        create(tmp_path, dataset="tickets", base=str(tmp_path / "nope.gguf"), settings=TrainSettings())


def _checkpoint(root: Path, step: int, *, torn: str | None = None) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    weights = struct.pack("<Q", len(header)) + header + b"\0" * 8
    (path / "adapter_model.safetensors").write_bytes(weights[:-3] if torn == "weights" else weights)
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        with zipfile.ZipFile(path / name, "w") as archive:
            archive.writestr("data.pkl", b"x" * 100)
    if torn == "optimizer":
        data = (path / "optimizer.pt").read_bytes()
        (path / "optimizer.pt").write_bytes(data[:40])
    if torn != "state":
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


@pytest.mark.parametrize("torn", ["state", "weights", "optimizer"])
def test_a_torn_latest_checkpoint_is_skipped_for_the_previous_one(tmp_path: Path, torn: str) -> None:
    good = _checkpoint(tmp_path, 10)
    bad = _checkpoint(tmp_path, 20, torn=torn)
    assert problem(20, bad) is not None
    said: list[str] = []
    assert latest_complete(tmp_path, said.append) == good
    assert "checkpoint-20 is unusable" in said[0]
    assert not bad.exists() and len(list(tmp_path.glob("torn-checkpoint-20-*"))) == 1  # kept aside


def test_no_complete_checkpoint_means_step_zero(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 5, torn="state")
    assert latest_complete(tmp_path, lambda _: None) is None
    assert latest_complete(tmp_path / "absent", lambda _: None) is None


def test_the_job_lock_says_whether_a_worker_is_alive(tmp_path: Path) -> None:
    assert not worker_alive(tmp_path)
    with job_lock(tmp_path):
        holder = subprocess.run(
            [sys.executable, "-c", f"from margin.tuning.schedule import worker_alive; from pathlib import Path; "
             f"print(worker_alive(Path({str(tmp_path)!r})))"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert holder.stdout.strip() == "True"
        with pytest.raises(JobBusy), job_lock(tmp_path):
            pass
    assert not worker_alive(tmp_path)


def test_one_job_per_machine_waits_for_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("margin.tuning.schedule.POLL_S", 0.05)
    waited: list[str] = []
    script = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(0.5)"
    )
    (tmp_path / "tuning").mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "tuning" / "train.lock")], stdout=subprocess.PIPE
    )
    assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
    with machine_slot(tmp_path, TrainSettings(), waited.append):
        assert holder.poll() is not None  # got the slot only once the other job let go
    assert "one job per machine" in waited[0]
    with machine_slot(tmp_path, TrainSettings(exclusive=False), waited.append):
        pass
    assert len(waited) == 1


def test_the_window_waits_until_it_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("margin.tuning.schedule.POLL_S", 0.0)
    clock = iter([datetime(2026, 1, 1, 21, 59), datetime(2026, 1, 1, 21, 59, 30), datetime(2026, 1, 1, 22, 0)])
    waited: list[str] = []
    wait_for_window(TrainSettings(window="22:00-06:00"), waited.append, now=lambda: next(clock))
    assert waited == ["waiting for the off-peak window 22:00-06:00 (local time)"]


def test_resume_and_serving_refuse_what_they_cannot_do(tmp_path: Path) -> None:
    _dataset(tmp_path)
    job = create(
        tmp_path, dataset="tickets", base=str(_fake_gguf(tmp_path)), settings=TrainSettings(steps=2, save_steps=1)
    )
    with pytest.raises(TrainingError, match="no adapter to serve"):
        adapter_of(job)
    jobs.update_job(job, state="running", attempts=1, pid=999_999)
    assert view(job).state == "interrupted"  # its worker is gone
    with job_lock(job), pytest.raises(JobBusy, match="still running"):
        prepare_resume(job)
    assert prepare_resume(job) is not None
    jobs.update_job(job, state="succeeded")
    assert prepare_resume(job) is None
    with pytest.raises(JobNotFound):
        jobs.find_job(tmp_path, "../etc")
    with pytest.raises(JobNotFound, match="no training job 'nope'"):
        jobs.find_job(tmp_path, "nope")


def test_a_full_disk_is_named_whatever_wrote_the_file() -> None:
    from margin.tuning.worker import disk_full

    assert disk_full(OSError(28, "No space left on device", "/data/x/optimizer.pt")) == (
        "the disk filled while writing /data/x/optimizer.pt (No space left on device)"
    )
    native = RuntimeError("saving failed")
    native.__cause__ = Exception("File too large (os error 27)")  # safetensors / tokenizers (Rust) say it so
    assert disk_full(native) == "the disk filled while writing the job's files (File too large (os error 27))"
    assert disk_full(ValueError("shapes do not match")) is None


def test_target_modules_are_all_linear_or_named() -> None:
    from margin.tuning.train import target_modules

    assert target_modules("all-linear") == "all-linear"
    assert target_modules("q_proj,v_proj") == ["q_proj", "v_proj"]
    with pytest.raises(ValidationError, match="target_modules"):
        TrainSettings(target_modules="q_proj; rm -rf")
