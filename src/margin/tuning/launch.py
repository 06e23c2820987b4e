"""Start, resume and inspect training jobs: what `margin tune train|resume|status` call. Cheap checks
(the dataset exists and is big enough, the base GGUF exists) run here, before a worker starts;
the worker (`python -m margin.tuning.worker`) does the rest in its own process."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from margin.tuning import jobs
from margin.tuning.base_model import resolve_base
from margin.tuning.dataset import dataset_dir, read_manifest
from margin.tuning.errors import JobBusy, TrainingError
from margin.tuning.schedule import worker_alive
from margin.tuning.settings import TrainSettings
from margin.tuning.train import training_rows

WORKER_LOG = "worker.log"


def create(data_dir: Path, *, dataset: str, base: str, settings: TrainSettings) -> Path:
    """A queued job, after checking its dataset and base model; DatasetError/TrainingError otherwise."""
    directory = dataset_dir(data_dir, dataset)
    read_manifest(directory)
    training_rows(directory, dataset)
    resolve_base(base)
    return jobs.create_job(data_dir, dataset=dataset, base=base, settings=settings)


def spawn(job: Path, *, resume: bool) -> subprocess.Popen[bytes]:
    """The job's worker, in its own session (a Ctrl-C here does not reach it), logging to worker.log."""
    command = [sys.executable, "-m", "margin.tuning.worker", str(job)] + (["--resume"] if resume else [])
    with (job / WORKER_LOG).open("ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def prepare_resume(job: Path) -> jobs.JobRecord | None:
    """The record of a job that may be resumed; None when it already succeeded (nothing to do);
    JobBusy while its worker is alive."""
    record = jobs.read_job(job)
    if record.state == "succeeded":
        return None
    if worker_alive(job):
        raise JobBusy(f"job {record.id} is still running (pid {record.pid}); `margin tune status {record.id}`")
    return record


@dataclass(frozen=True, slots=True)
class JobView:
    record: jobs.JobRecord
    alive: bool

    @property
    def state(self) -> str:
        """The stored state, with a worker that died mid-run (kill -9, a lost machine) called out."""
        if self.record.state in ("running", "queued") and self.record.attempts and not self.alive:
            return "interrupted"
        return self.record.state


def view(job: Path) -> JobView:
    return JobView(jobs.read_job(job), worker_alive(job))


def adapter_of(job: Path) -> Path:
    """A succeeded job's adapter.gguf; TrainingError otherwise (nothing half-written is served)."""
    record = jobs.read_job(job)
    path = job / jobs.ADAPTER_GGUF
    if record.state != "succeeded" or not path.is_file():
        raise TrainingError(f"job {record.id} has no adapter to serve (state {record.state})")
    return path
