"""Training jobs on disk (docs/tuning.md, "Training"): `<data_dir>/tuning/jobs/<job_id>/` holds

- `job.json`: the job's record (state queued|running|succeeded|failed, dataset, base, settings,
  progress, error), replaced atomically (written beside, fsynced, renamed) so a reader or a killed
  worker never leaves half of it;
- `checkpoints/checkpoint-N/`: the trainer's checkpoints (adapter, optimizer, scheduler, RNG state);
- `adapter/`: the finished PEFT adapter (safetensors), `adapter.gguf`: the same for llama.cpp, written
  only when the job succeeds (promotion reads only a succeeded job's adapter.gguf).
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field, ValidationError

from margin.config.base import Strict
from margin.tuning.errors import JobNotFound, TrainingError

__all__ = ["JobNotFound", "JobRecord"]
from margin.tuning.settings import TrainSettings

State = Literal["queued", "running", "succeeded", "failed"]
JOB_FILE = "job.json"
CHECKPOINTS = "checkpoints"
ADAPTER_DIR = "adapter"
ADAPTER_GGUF = "adapter.gguf"
BASE_CONFIG_DIR = "base-config"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class JobRecord(Strict):
    id: str
    state: State = "queued"
    dataset: str = Field(description="the dataset's name (under <data_dir>/tuning/datasets)")
    base: str = Field(description="`local` (the local tier's SmolLM2 GGUF) or a GGUF's path")
    settings: TrainSettings
    created: float
    started: float | None = None
    finished: float | None = None
    step: int = 0
    loss: float | None = None
    eval_loss: float | None = None  # on the validation split, at the end
    pid: int | None = None
    attempts: int = 0  # worker runs: 1 + resumes
    resumed_from: str | None = None  # the checkpoint the latest run started from
    train_examples: int = 0
    train_seconds: float = 0.0  # summed over the runs
    message: str | None = None  # what the worker is doing or waiting for
    error: str | None = None  # a failed job's reason
    adapter_gguf: str | None = None  # set when succeeded

    def evolve(self, **changes: Any) -> JobRecord:
        return JobRecord.model_validate({**self.model_dump(), **changes})


def data_dir_of(job: Path) -> Path:
    """The data directory a job directory lives in (`<data_dir>/tuning/jobs/<id>`)."""
    return job.resolve().parents[2]


def jobs_root(data_dir: Path) -> Path:
    return data_dir / "tuning" / "jobs"


def new_job_id(dataset: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{dataset[:60]}-{stamp}-{secrets.token_hex(3)}"


def job_dir(data_dir: Path, job_id: str) -> Path:
    if not _ID.match(job_id):
        raise JobNotFound(f"job {job_id!r}: not a job id (letters, digits, '.', '_', '-')")
    return jobs_root(data_dir) / job_id


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` whole: a temporary file beside it, fsynced, renamed over it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:  # any failure, Ctrl-C included: the temporary file is removed; re-raised
        Path(tmp).unlink(missing_ok=True)
        raise


def write_job(directory: Path, record: JobRecord) -> JobRecord:
    write_atomic(directory / JOB_FILE, orjson.dumps(record.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    return record


def read_job(directory: Path) -> JobRecord:
    path = directory / JOB_FILE
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise JobNotFound(f"no training job at {directory} ({JOB_FILE} is missing)") from None
    except orjson.JSONDecodeError as exc:
        raise TrainingError(f"{path}: not JSON ({exc})") from None
    try:
        return JobRecord.model_validate(data)
    except ValidationError as exc:
        raise TrainingError(f"{path}: not a job record ({exc.errors()[0]['msg']})") from None


def update_job(directory: Path, **changes: Any) -> JobRecord:
    return write_job(directory, read_job(directory).evolve(**changes))


def create_job(data_dir: Path, *, dataset: str, base: str, settings: TrainSettings) -> Path:
    job_id = new_job_id(dataset)
    directory = job_dir(data_dir, job_id)
    directory.mkdir(parents=True)
    record = JobRecord(id=job_id, dataset=dataset, base=base, settings=settings, created=time.time())
    write_job(directory, record)
    return directory


def find_job(data_dir: Path, job_id: str) -> Path:
    directory = job_dir(data_dir, job_id)
    if not (directory / JOB_FILE).is_file():
        raise JobNotFound(f"no training job {job_id!r} under {jobs_root(data_dir)}")
    return directory


def list_jobs(data_dir: Path) -> list[JobRecord]:
    """Every readable job, newest first."""
    root = jobs_root(data_dir)
    found = []
    for child in sorted(root.iterdir()) if root.is_dir() else ():
        try:
            found.append(read_job(child))
        except (JobNotFound, TrainingError):
            continue
    return sorted(found, key=lambda r: r.created, reverse=True)


def summary(record: JobRecord) -> Mapping[str, Any]:
    return {
        "id": record.id,
        "state": record.state,
        "dataset": record.dataset,
        "step": f"{record.step}/{record.settings.steps}",
        "loss": None if record.loss is None else round(record.loss, 4),
        "attempts": record.attempts,
        "error": record.error,
    }
