"""`margin bench-upstream URL`: measure an OpenAI-compatible endpoint at several concurrency levels and write the
throughput as a planner override (see docs/planner.md, "Measuring an endpoint")."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import click

from margin.cli.help import examples
from margin.cli.progress import Progress, progress
from margin.config.base import EnvSecret, parse_secret
from margin.planner.catalog import PRECISIONS, Catalog, Precision, load_catalog
from margin.planner.measure import (
    BenchRun,
    LevelStats,
    MeasureError,
    PlannerTarget,
    guess_catalog_model,
    level_stats,
    override_yaml,
    throughput_level,
)
from margin.providers.loadgen import LevelRun, LoadSpec, run_benchmark

HEADER = (
    f"{'conc':>5} {'reqs':>5} {'errors':>6} {'req/s':>8} {'out tok/s':>10} {'ttft p50':>9} {'ttft p95':>9} "
    f"{'lat p50':>9} {'lat p95':>9}"
)


@click.command(
    "bench-upstream",
    epilog=examples(
        "margin bench-upstream http://127.0.0.1:8000/v1 --model meta-llama/Llama-3.1-8B-Instruct",
        "margin bench-upstream http://gpu-box:8000/v1 --model llama --concurrency 1,8,32 --requests 64 \\",
        "    --ignore-eos --gpu l4 --catalog-model llama-3.1-8b --out measured.yaml   # a planner override",
        "margin bench-upstream https://api.openai.com/v1 --model gpt-4o-mini --api-key env:OPENAI_API_KEY --requests 8",
    ),
)
@click.argument("url")
@click.option("--model", required=True, help="Model name the endpoint serves.")
@click.option("--api-key", default=None, metavar="env:VAR|KEY", help="Bearer key, or env:VAR to read it.")
@click.option("--concurrency", default="1,4,16", show_default=True, help="Comma-separated concurrency levels.")
@click.option("--requests", "requests_", type=click.IntRange(min=1), default=32, show_default=True,
              help="Requests per level (at least one per worker).")  # fmt: skip
@click.option("--input-tokens", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--output-tokens", type=click.IntRange(min=1), default=128, show_default=True, help="max_tokens.")
@click.option("--stream/--no-stream", default=True, show_default=True)
@click.option("--ignore-eos", is_flag=True, help="Send ignore_eos (vLLM/SGLang) so every answer is max_tokens long.")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True, help="Unmeasured requests first.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=300.0,
              show_default=True, help="Seconds per request.")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the planner override (YAML) here.")  # fmt: skip
@click.option("--catalog-model", default=None, help="Planner catalog model id [default: guessed from --model].")
@click.option("--gpu", default=None, help="Planner catalog GPU id the endpoint runs on (needed with --out).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp16", show_default=True)
@click.option("--tensor-parallel", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--engine", default="unknown", show_default=True, help="Serving engine, e.g. 'vllm 0.6.3'.")
def bench_upstream(
    url: str,
    model: str,
    api_key: str | None,
    concurrency: str,
    requests_: int,
    input_tokens: int,
    output_tokens: int,
    stream: bool,
    ignore_eos: bool,
    warmup: int,
    timeout_s: float,
    out: Path | None,
    catalog_model: str | None,
    gpu: str | None,
    precision: Precision,
    tensor_parallel: int,
    engine: str,
) -> None:
    """Load URL (an OpenAI-compatible base such as http://host:8000/v1) with chat completions at each
    concurrency level; print requests/s, output tokens/s, TTFT and latency percentiles and errors."""
    levels = parse_levels(concurrency)
    catalog = load_catalog() if out is not None else None
    target = _target(model, catalog, catalog_model, gpu, precision, tensor_parallel, engine)
    spec = LoadSpec(url, model, _resolve_key(api_key), input_tokens, output_tokens, stream, ignore_eos, timeout_s)
    click.echo(HEADER)
    stats: list[LevelStats] = []
    total = sum(max(requests_, level) for level in levels)
    with progress(total, "requests") as bar:

        def report(run: LevelRun) -> None:
            stats.append(level_stats(run.concurrency, run.wall_s, run.samples))
            bar.echo(format_row(stats[-1]))
            _echo_errors(run, bar)

        asyncio.run(
            run_benchmark(spec, levels, requests_, warmup=warmup, on_level=report, on_request=lambda _: bar.advance())
        )
    result = BenchRun(url, model, dt.datetime.now(dt.UTC).date().isoformat(), stream, input_tokens, output_tokens,
                      tuple(stats))  # fmt: skip
    _finish(result, catalog, target, out)


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers, got {text!r}", param_hint="--concurrency"
        ) from None
    if not levels or min(levels) < 1:
        raise click.BadParameter("levels must be positive integers", param_hint="--concurrency")
    return levels


def format_row(level: LevelStats) -> str:
    return (
        f"{level.concurrency:>5} {level.requests:>5} {level.errors:>6} {level.requests_per_s:>8.2f} "
        f"{level.output_tok_s:>10.1f} {_ms(level.ttft_p50_s)} {_ms(level.ttft_p95_s)} "
        f"{_ms(level.latency_p50_s)} {_ms(level.latency_p95_s)}"
    )


def _ms(seconds: float | None) -> str:
    return f"{'-':>9}" if seconds is None else f"{seconds * 1000:>7.0f}ms"


def _echo_errors(run: LevelRun, bar: Progress) -> None:
    errors = sorted({s.error for s in run.samples if not s.ok})
    for error in errors[:3]:
        bar.echo(f"  concurrency {run.concurrency}: {error}", err=True)


def _resolve_key(api_key: str | None) -> str | None:
    if api_key is None:
        return None
    secret = EnvSecret.model_validate(parse_secret(api_key))
    value = secret.resolve()
    if not value:
        raise click.BadParameter(f"{secret.masked()} is not set", param_hint="--api-key")
    return value


def _target(
    model: str,
    catalog: Catalog | None,
    catalog_model: str | None,
    gpu: str | None,
    precision: Precision,
    tensor_parallel: int,
    engine: str,
) -> PlannerTarget | None:
    """Check the catalog ids before any request is sent, so a long run never ends in a usage error."""
    if catalog is None:
        return None
    chosen = catalog_model or guess_catalog_model(model, catalog)
    if chosen is None or chosen not in catalog.models:
        known = ", ".join(sorted(catalog.models))
        raise click.BadParameter(f"give a planner catalog model id ({known})", param_hint="--catalog-model")
    if gpu is None or gpu not in catalog.gpus:
        known = ", ".join(sorted(catalog.gpus))
        raise click.BadParameter(f"--out needs the catalog GPU the endpoint runs on ({known})", param_hint="--gpu")
    return PlannerTarget(chosen, gpu, precision, tensor_parallel, engine)


def _finish(result: BenchRun, catalog: Catalog | None, target: PlannerTarget | None, out: Path | None) -> None:
    try:
        best = throughput_level(result.levels)
        click.echo(f"best: {best.output_tok_s:.1f} output tok/s at concurrency {best.concurrency}")
        if out is None or catalog is None or target is None:
            return
        out.write_text(override_yaml(result, target, catalog), encoding="utf-8")
    except MeasureError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {out} (planner override for {target.model} on {target.gpu})", err=True)
