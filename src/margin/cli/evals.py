"""`margin eval run|compare|summary|sets`: eval sets through margin, paired comparisons, gates.

Exit status: 0 done (compare: every gate passed), 1 a gate failed, 2 the command could not do its
work (a malformed set, an unreachable gateway, a missing extra ...), with the reason on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import click

from margin.cli.help import examples
from margin.cli.options import data_dir_option
from margin.config.environment import EVAL_API_KEY
from margin.errors import ConfigError
from margin.evals.errors import EvalError

FORMATS = ("table", "markdown", "json", "junit")


class EvalCliError(click.ClickException):
    exit_code = 2


def fail(error: EvalError | ConfigError) -> EvalCliError:
    return EvalCliError(error.message)


@click.group(
    "eval",
    epilog=examples(
        "margin eval sets",
        "margin eval run margin-basics --model smollm2                      # in-process, the embedded default",
        "margin eval run margin-basics --model chat --url http://127.0.0.1:8080 --out base.jsonl",
        "margin eval compare base.jsonl candidate.jsonl --max-drop 0.02",
    ),
)
def eval_group() -> None:
    """Eval sets: run them through margin, compare two runs, gate a candidate (docs/evals.md)."""


@eval_group.command(
    "run",
    epilog=examples(
        "margin eval run margin-basics --model smollm2",
        "margin eval run margin-basics --model chat --url http://127.0.0.1:8080 --api-key sk-margin-...",
        "margin eval run my-set.jsonl --model chat --config margin.yaml --concurrency 8 --out my.jsonl",
        "margin eval run my-set.jsonl --model chat --out my.jsonl --retry-errors     # resume, retry failures",
        "margin eval run margin-basics --model smollm2 --param temperature=1.3 --param seed=7 --out hot.jsonl",
    ),
)
@click.argument("eval_set", metavar="SET")
@click.option("--model", required=True, help="The model group (or alias, or deployment) to evaluate.")
@click.option("--url", default=None, help="A running margin, e.g. http://127.0.0.1:8080 (default: in-process).")
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="In-process only: the margin config to build the gateway from (default: the embedded default).",
)  # fmt: skip
@click.option("--api-key", envvar=EVAL_API_KEY.name, default=None, help="The virtual key to present.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Results JSONL (default: SET.MODEL.results.jsonl here); a rerun resumes it.")  # fmt: skip
@click.option("--stream/--no-stream", default=False, show_default=True,
              help="Stream: measures time to first token, but streamed answers carry no cost header.")  # fmt: skip
@click.option("--retry-errors", is_flag=True, help="Run again the items whose call failed.")
@click.option("--param", "param_pairs", multiple=True, metavar="KEY=VALUE",
              help="A sampling setting for every call, over the set's own (temperature, top_p, seed, "
                   "max_tokens, presence_penalty, frequency_penalty); repeatable.")  # fmt: skip
@data_dir_option
def run(
    eval_set: str,
    model: str,
    url: str | None,
    config_path: Path | None,
    api_key: str | None,
    concurrency: int,
    out: Path | None,
    stream: bool,
    retry_errors: bool,
    param_pairs: tuple[str, ...],
) -> None:
    """Run every item of SET (a .jsonl or manifest .yaml, or a set shipped with margin) through
    margin, grade the answers, append them to the results file and print the run's summary."""
    from margin.cli.eval_run import RunRequest, execute_run
    from margin.evals.run_params import parse_run_params

    if url is not None and config_path is not None:
        raise EvalCliError("--config builds margin in-process; with --url the running gateway has its own config")
    try:
        params = parse_run_params(param_pairs)
        request = RunRequest(eval_set, model, url, config_path, api_key, concurrency, out, stream, retry_errors, params)
        text, errors = execute_run(request)
    except (EvalError, ConfigError) as exc:
        raise fail(exc) from None
    click.echo(text)
    if errors:
        click.echo(f"warning: {errors} calls failed (see `error` in the results file)", err=True)


@eval_group.command(
    "compare",
    epilog=examples(
        "margin eval compare base.jsonl candidate.jsonl",
        "margin eval compare base.jsonl candidate.jsonl --gates-from margin.yaml --model-group chat",
        "margin eval compare base.jsonl candidate.jsonl --format junit --output gate.xml   # CI",
    ),
)
@click.argument("baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("candidate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--gates-from", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A margin config whose model group's `gates:` apply.")  # fmt: skip
@click.option("--model-group", default=None, help="With --gates-from: the group whose gates apply.")
@click.option("--max-drop", type=click.FloatRange(0, 1), default=None,
              help="Without --gates-from: the quality gate's max_drop (default 0.02).")  # fmt: skip
@click.option("--confidence", type=click.FloatRange(0.5, 1, min_open=True, max_open=True), default=None,
              help="Without --gates-from: the quality gate's confidence (default 0.95).")  # fmt: skip
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report here instead of stdout.")  # fmt: skip
def compare(
    baseline: Path,
    candidate: Path,
    fmt: str,
    gates_from: Path | None,
    model_group: str | None,
    max_drop: float | None,
    confidence: float | None,
    output: Path | None,
) -> None:
    """Compare two runs of the same set item by item (BASELINE, then CANDIDATE) and apply the gates.
    Exits 1 when a gate fails."""
    from margin.cli.eval_compare import CompareRequest, execute_compare

    request = CompareRequest(baseline, candidate, fmt, gates_from, model_group, max_drop, confidence)
    try:
        text, passed = execute_compare(request)
    except (EvalError, ConfigError) as exc:
        raise fail(exc) from None
    except click.UsageError as exc:
        raise EvalCliError(exc.message) from None
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
        click.echo(f"verdict: {'PASS' if passed else 'FAIL'} (report in {output})", err=True)
    else:
        click.echo(text)
    if not passed:
        sys.exit(1)


@eval_group.command(
    "summary",
    epilog=examples("margin eval summary base.jsonl", "margin eval summary base.jsonl --format markdown"),
)
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(("table", "markdown", "json")), default="table")
def summary(results: Path, fmt: str) -> None:
    """Summarise a results file: quality with its interval, per tag, latency, errors, cost, tokens."""
    from margin.evals.render import SummaryFormat, render_summary
    from margin.evals.results import read_results
    from margin.evals.summary import summarise

    try:
        run_results = read_results(results)
    except EvalError as exc:
        raise fail(exc) from None
    click.echo(render_summary(summarise(run_results), cast(SummaryFormat, fmt)))


@eval_group.command("sets", epilog=examples("margin eval sets"))
def sets() -> None:
    """List the eval sets shipped with margin (usable by name as SET)."""
    from margin.evals.loader import PACKAGED, load_eval_set, packaged_sets

    for name in packaged_sets():
        loaded = load_eval_set(name)
        click.echo(f"{name}  v{loaded.version}  {len(loaded.items)} items  {PACKAGED / (name + '.jsonl')}")


def _sample_group() -> click.Command:
    from margin.cli.eval_sample import sample

    return sample


eval_group.add_command(_sample_group())


def _drift_group() -> click.Command:
    from margin.cli.eval_drift import drift

    return drift


eval_group.add_command(_drift_group())
