"""`margin tune train|resume|status|job` (docs/tuning.md, "Training"): a thin shell over
margin.tuning. Training runs in a worker process (`python -m margin.tuning.worker`); this command
waits for it and prints its progress, or with `--detach` prints the job id and returns.

Exit status: 0 the job succeeded (or, detached, started), 1 it failed (the reason on stderr),
2 it could not start (a bad dataset, base model or setting)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from margin.cli.help import examples
from margin.cli.options import data_dir_option
from margin.cli.output import echo_json
from margin.config.defaults import resolve_data_dir
from margin.errors import MarginError
from margin.tuning import jobs
from margin.tuning.emit import EMITTERS, Cluster
from margin.tuning.launch import JobView, create, prepare_resume, spawn, view
from margin.tuning.settings import TrainSettings

_POLL_S = 2.0


class TuneCliError(click.ClickException):
    exit_code = 2


def _fail(exc: MarginError) -> TuneCliError:
    return TuneCliError(exc.message)


def _settings(values: dict[str, Any]) -> TrainSettings:
    try:
        return TrainSettings.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise TuneCliError(f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None


def _follow(job: Path, process: Any) -> None:
    """Print the job's progress until its worker exits; exit 1 if the job failed."""
    shown = ""
    while process.poll() is None:
        time.sleep(_POLL_S)
        line = _line(view(job))
        if line != shown:
            click.echo(line, err=True)
            shown = line
    final = view(job)
    click.echo(_line(final), err=True)
    if final.record.state != "succeeded":
        click.echo(f"job {final.record.id} {final.state}: {final.record.error or 'the worker exited'}", err=True)
        click.echo(f"its log: {job / 'worker.log'}", err=True)
        sys.exit(1)
    click.echo(final.record.adapter_gguf)


def _line(v: JobView) -> str:
    r = v.record
    loss = "" if r.loss is None else f" loss {r.loss:.4f}"
    note = f" ({r.message})" if r.message else ""
    return f"{r.id}: {v.state} step {r.step}/{r.settings.steps}{loss}{note}"


_SETTING_OPTIONS = [
    click.option("--steps", type=int, default=None, help="Optimizer steps (default 300)."),
    click.option("--rank", type=int, default=None, help="LoRA rank (default 16)."),
    click.option("--alpha", type=int, default=None, help="LoRA alpha (default 32)."),
    click.option("--dropout", type=float, default=None, help="LoRA dropout (default 0)."),
    click.option("--target-modules", default=None, help="PEFT target_modules (default all-linear)."),
    click.option("--learning-rate", type=float, default=None, help="Learning rate (default 5e-4)."),
    click.option("--batch-size", type=int, default=None, help="Examples per step (default 4)."),
    click.option("--max-length", type=int, default=None, help="Tokens per example (default 512)."),
    click.option("--save-steps", type=int, default=None, help="A checkpoint every N steps (default 25)."),
    click.option("--keep-checkpoints", type=int, default=None, help="Newest checkpoints kept (default 3)."),
    click.option("--seed", type=int, default=None, help="Seed of data order and LoRA init (default 42)."),
    click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)."),
    click.option("--nice", type=int, default=None, help="Worker niceness, 0-19 (default 10)."),
    click.option("--window", default=None, help="Off-peak window HH:MM-HH:MM, local time (default: any time)."),
    click.option("--shared/--exclusive", "shared", default=None, help="Allow a second job beside a running one."),
]


def _with_settings(command: Any) -> Any:
    for option in reversed(_SETTING_OPTIONS):
        command = option(command)
    return command


@click.command(
    "train",
    epilog=examples(
        "margin tune train --dataset support-2026-12-07",
        "margin tune train --dataset tickets --steps 200 --save-steps 20 --window 22:00-06:00 --detach",
        "margin tune train --dataset tickets --base /models/qwen2.5-0.5b-instruct-q8_0.gguf --rank 8",
    ),
)
@data_dir_option
@click.option("--dataset", required=True, help="A dataset under the data dir (`margin tune dataset list`).")
@click.option("--base", default="local", show_default=True, help="`local` (the local tier's GGUF) or a GGUF path.")
@click.option("--detach", is_flag=True, help="Start the worker and return (follow with `margin tune status`).")
@_with_settings
def train(dataset: str, base: str, detach: bool, shared: bool | None, **values: Any) -> None:
    """Train a LoRA adapter on a dataset (PEFT + TRL), in a worker process, with checkpoints."""
    settings = _settings({**values, "exclusive": None if shared is None else not shared})
    try:
        job = create(resolve_data_dir(), dataset=dataset, base=base, settings=settings)
    except MarginError as exc:
        raise _fail(exc) from None
    click.echo(f"job {job.name}", err=True)
    _start(job, resume=False, detach=detach)


@click.command(
    "resume",
    epilog=examples(
        "margin tune resume tickets-20261207-101500-a1b2c3",
        "margin tune resume tickets-20261207-101500-a1b2c3 --detach",
        "# in a Kubernetes Job or SkyPilot task: safe to run again after a restart or a spot interruption",
        "margin tune resume --data-dir /data tickets-20261207-101500-a1b2c3",
    ),
)
@data_dir_option
@click.argument("job_id", metavar="JOB")
@click.option("--detach", is_flag=True, help="Start the worker and return.")
def resume(job_id: str, detach: bool) -> None:
    """Go on with a job from its newest complete checkpoint (a torn one is skipped)."""
    try:
        job = jobs.find_job(resolve_data_dir(), job_id)
        record = prepare_resume(job)
    except MarginError as exc:
        raise _fail(exc) from None
    if record is None:
        click.echo(f"job {job_id} already succeeded", err=True)
        click.echo(jobs.read_job(job).adapter_gguf)
        return
    _start(job, resume=True, detach=detach)


def _start(job: Path, *, resume: bool, detach: bool) -> None:
    """Start the job's worker; with `detach` print the job's name and return, else follow it."""
    process = spawn(job, resume=resume)
    if detach:
        click.echo(job.name)
        return
    _follow(job, process)


@click.command(
    "status",
    epilog=examples(
        "margin tune status",
        "margin tune status tickets-20261207-101500-a1b2c3",
        "margin tune status --json",
    ),
)
@data_dir_option
@click.argument("job_id", metavar="[JOB]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(job_id: str | None, as_json: bool) -> None:
    """Training jobs: state (interrupted: the worker died; resume it), step, loss, error."""
    data_dir = resolve_data_dir()
    try:
        if job_id is not None:
            v = view(jobs.find_job(data_dir, job_id))
            record = {**v.record.model_dump(mode="json"), "state": v.state, "stored_state": v.record.state}
            echo_json(record)
            return
    except MarginError as exc:
        raise _fail(exc) from None
    views = [view(jobs.jobs_root(data_dir) / r.id) for r in jobs.list_jobs(data_dir)]
    rows = [{**jobs.summary(v.record), "state": v.state} for v in views]
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no training jobs under {jobs.jobs_root(data_dir)}", err=True)
    for row in rows:
        click.echo("  ".join(str(row[k] if row[k] is not None else "-") for k in ("id", "state", "step", "loss")))


@click.command(
    "job",
    epilog=examples(
        "margin tune job --emit k8s tickets-20261207-101500-a1b2c3 --pvc margin-data > job.yaml",
        "margin tune job --emit skypilot tickets-20261207-101500-a1b2c3 --bucket s3://acme-margin/data",
        "margin tune job --emit k8s JOB --image registry.example.com/margin:0.1.0-tune --gpus 1",
    ),
)
@data_dir_option
@click.argument("job_id", metavar="JOB")
@click.option("--emit", "kind", type=click.Choice(sorted(EMITTERS)), required=True, help="The runner to write for.")
@click.option("--image", default="margin:0.1.0", show_default=True, help="k8s: the project image (extra tune).")
@click.option("--pvc", default="margin-data", show_default=True, help="k8s: the claim holding the data dir.")
@click.option("--bucket", default=None, help="skypilot: the bucket mounted as the data dir (s3://, gs://).")
@click.option("--accelerator", default="L4:1", show_default=True, help="skypilot: accelerators (NAME:COUNT).")
@click.option("--gpus", type=int, default=1, show_default=True, help="k8s: nvidia.com/gpu limit (0: CPU).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write here.")
def job(
    job_id: str, kind: str, image: str, pvc: str, bucket: str | None, accelerator: str, gpus: int, out: Path | None
) -> None:
    """Write the job for a runner margin does not orchestrate: a Kubernetes Job or a SkyPilot task."""
    try:
        record = jobs.read_job(jobs.find_job(resolve_data_dir(), job_id))
        cluster = Cluster(image=image, pvc=pvc, bucket=bucket, accelerator=accelerator, gpus=gpus)
        text = EMITTERS[kind](record, cluster)
    except MarginError as exc:
        raise _fail(exc) from None
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(str(out), err=True)
