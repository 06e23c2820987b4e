"""The work behind `margin eval run`: build the wire (HTTP, or margin in-process), check the gateway
serves the model and the judge, run the pending items under a progress bar, summarise."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

import click

from margin.cli.progress import progress
from margin.evals.asgi_wire import AsgiWire
from margin.evals.gateway import GatewayTarget
from margin.evals.graders.protocol import GraderEnv
from margin.evals.graders.similarity import default_embedder
from margin.evals.loader import EvalSet, load_eval_set
from margin.evals.render import render_summary
from margin.evals.results import read_results
from margin.evals.run_params import ParamValue
from margin.evals.runner import Runner, check_models, pending_items
from margin.evals.summary import summarise
from margin.evals.wire import Wire


@dataclass(frozen=True, slots=True)
class RunRequest:
    eval_set: str
    model: str
    url: str | None
    config_path: Path | None
    api_key: str | None
    concurrency: int
    out: Path | None
    stream: bool
    retry_errors: bool
    params: dict[str, ParamValue] = field(default_factory=dict)  # --param overrides, already checked


def execute_run(request: RunRequest) -> tuple[str, int]:
    """(the summary text, how many calls failed). Raises EvalError / ConfigError."""
    eval_set = load_eval_set(request.eval_set)
    out = request.out or default_out(request.eval_set, request.model)
    done = read_results(out)
    todo = pending_items(eval_set, done, retry_errors=request.retry_errors)
    if len(todo) < len(eval_set.items):
        click.echo(f"resuming {out}: {len(eval_set.items) - len(todo)} items already done", err=True)
    asyncio.run(_run(request, eval_set, out, len(todo)))
    summary = summarise(read_results(out))
    return render_summary(summary), summary.errors


def _wire(request: RunRequest) -> Wire:
    if request.url is not None:
        from margin.providers.gateway_client import GatewayClient

        return GatewayClient(request.url)
    from margin.app import create_app
    from margin.config import embedded_default, load_config

    config = load_config(request.config_path) if request.config_path else embedded_default()
    return AsgiWire(create_app(config))


async def _run(request: RunRequest, eval_set: EvalSet, out: Path, pending: int) -> None:
    wire = _wire(request)
    try:
        if isinstance(wire, AsgiWire):
            await wire.start()
        target = GatewayTarget(wire, api_key=request.api_key, stream=request.stream)
        check_models(await target.models(), request.model, eval_set)
        judge_target = GatewayTarget(wire, api_key=request.api_key, stream=False)
        env = GraderEnv(judge=eval_set.manifest.judge, judge_target=judge_target, embedder_factory=default_embedder)
        runner = Runner(eval_set, target, env, model=request.model, overrides=request.params)
        with progress(pending, f"{eval_set.name} on {request.model}") as bar:
            await runner.run(
                out,
                concurrency=request.concurrency,
                retry_errors=request.retry_errors,
                on_result=lambda _: bar.advance(),
            )
    finally:
        await wire.aclose()


def default_out(eval_set: str, model: str) -> Path:
    stem = Path(eval_set).stem if eval_set.endswith((".jsonl", ".yaml", ".yml")) else eval_set
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{stem}.{model}")
    return Path(f"{safe}.results.jsonl")
