"""The training worker: `python -m margin.tuning.worker JOB_DIR [--resume]`.

One process per job run, so the CLI and the gateway stay light (no torch in them) and a kill -9
is a real one. It lowers its priority, waits for the off-peak window and the machine's training
lock, trains (from the newest complete checkpoint when resuming), converts the adapter for
llama.cpp and marks the job succeeded; any failure marks it failed with the reason, and leaves no
adapter.gguf (promotion reads only a succeeded job's). Exit status: 0 succeeded, 1 failed."""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import time
from pathlib import Path

from margin.config.environment import HF_HUB_OFFLINE
from margin.errors import MarginError
from margin.tuning import jobs
from margin.tuning.base_model import load_base, resolve_base, save_base_config
from margin.tuning.checkpoints import latest_complete
from margin.tuning.convert import convert
from margin.tuning.dataset import dataset_dir
from margin.tuning.errors import TrainingError
from margin.tuning.schedule import job_lock, lower_priority, machine_slot, wait_for_window
from margin.tuning.train import train, training_rows

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_CODES = "|".join(str(code) for code in sorted(_DISK_FULL))
_DISK_FULL_TEXT = re.compile(
    rf"[^()]*\(os error (?:{_CODES})\)|No space left on device|File too large|Disk quota exceeded"
)


def _say(job: Path, message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    jobs.update_job(job, message=message)


def run(job: Path, *, resume: bool) -> jobs.JobRecord:
    record = jobs.read_job(job)
    data_dir = jobs.data_dir_of(job)
    HF_HUB_OFFLINE.export("1")  # no weights or configs are downloaded at run time
    lower_priority(record.settings)
    with job_lock(job), machine_slot(data_dir, record.settings, lambda m: _say(job, m)):
        wait_for_window(record.settings, lambda m: _say(job, m))
        try:
            return _train_and_convert(job, data_dir, resume=resume)
        except MarginError as exc:
            return _fail(job, exc.message)
        except Exception as exc:  # the trainer's own errors: recorded, never a silent death
            logging.getLogger(__name__).exception("job %s failed", job.name)
            full = disk_full(exc)
            return _fail(job, full if full is not None else f"{type(exc).__name__}: {exc}")


def disk_full(exc: BaseException) -> str | None:
    """The reason to give when `exc` (or what caused it) is a full disk: an OSError with ENOSPC,
    EDQUOT or EFBIG, or the same error reported as text by a native writer (safetensors says
    "File too large (os error 27)")."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL:
            return f"the disk filled while writing {seen.filename or 'a file'} ({seen.strerror})"
        match = _DISK_FULL_TEXT.search(str(seen))
        if match:
            return f"the disk filled while writing the job's files ({match.group(0).strip()})"
        seen = seen.__cause__ or seen.__context__
    return None


def _fail(job: Path, reason: str) -> jobs.JobRecord:
    print(f"job {job.name} failed: {reason}", file=sys.stderr, flush=True)
    (job / jobs.ADAPTER_GGUF).unlink(missing_ok=True)
    try:
        return jobs.update_job(job, state="failed", error=reason, finished=time.time(), pid=None, message=None)
    except OSError:  # the disk is still full: the reason is on stderr (the job's worker.log)
        return jobs.read_job(job).evolve(state="failed", error=reason)


def _train_and_convert(job: Path, data_dir: Path, *, resume: bool) -> jobs.JobRecord:
    record = jobs.read_job(job)
    rows = training_rows(dataset_dir(data_dir, record.dataset), record.dataset)
    base = resolve_base(record.base)
    checkpoints = job / jobs.CHECKPOINTS
    start = latest_complete(checkpoints, lambda m: _say(job, m)) if resume else None
    if resume and start is None and checkpoints.is_dir() and any(checkpoints.iterdir()):
        _say(job, "no complete checkpoint: starting from step 0")
    (job / jobs.ADAPTER_GGUF).unlink(missing_ok=True)
    jobs.update_job(
        job, state="running", pid=os.getpid(), attempts=record.attempts + 1, started=record.started or time.time(),
        resumed_from=start.name if start else None, error=None, finished=None, message="loading the base model",
    )  # fmt: skip
    model, tokenizer = load_base(base)
    save_base_config(model, tokenizer, job / jobs.BASE_CONFIG_DIR)
    _say(job, f"training from {start.name}" if start else "training")
    result = train(
        model=model, tokenizer=tokenizer, rows=rows, settings=record.settings, checkpoints=checkpoints,
        adapter=job / jobs.ADAPTER_DIR, resume_from=start,
        progress=lambda step, loss: _progress(job, step, loss),
    )  # fmt: skip
    _say(job, "converting the adapter for llama.cpp")
    gguf = convert(result.adapter, job / jobs.BASE_CONFIG_DIR, job / jobs.ADAPTER_GGUF)
    done = jobs.read_job(job)
    return jobs.update_job(
        job, state="succeeded", step=result.steps, loss=result.loss, eval_loss=result.eval_loss,
        train_examples=result.examples, train_seconds=done.train_seconds + result.seconds,
        adapter_gguf=str(gguf), finished=time.time(), pid=None, message=None,
    )  # fmt: skip


def _progress(job: Path, step: int, loss: float | None) -> None:
    changes: dict[str, object] = {"step": step, "message": None}
    if loss is not None:
        changes["loss"] = loss
    jobs.update_job(job, **changes)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python -m margin.tuning.worker JOB_DIR [--resume]", file=sys.stderr)
        return 2
    try:
        record = run(Path(args[0]), resume="--resume" in args[1:])
    except MarginError as exc:  # the job cannot be read, or another worker runs it
        if isinstance(exc, TrainingError | jobs.JobNotFound):
            print(exc.message, file=sys.stderr)
            return 1
        print(exc.message, file=sys.stderr)
        return 3
    return 0 if record.state == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
