"""`margin simulate`: price autoscaling policies for a self-hosted tier on a demand trace
(docs/simulate.md)."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from margin.cli.help import examples
from margin.errors import ConfigError


@click.command(
    epilog=examples(
        "margin simulate --policies policies.yaml --profile diurnal.yaml",
        "margin simulate --policies policies.yaml --trace demand.csv --format json",
        "margin simulate --policies policies.yaml --profile diurnal.yaml --format html > simulate.html",
    )
)
@click.option(
    "--policies", "policies_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--trace", "trace_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="minute,requests lines"
)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="a synthetic `diurnal:` profile (YAML)",
)
@click.option("--format", "output_format", type=click.Choice(["table", "json", "html"]), default="table")
@click.option("--seed", type=int, default=0, help="seed of the spot interruptions")
def simulate(
    policies_path: Path, trace_path: Path | None, profile_path: Path | None, output_format: str, seed: int
) -> None:
    """Replay per-minute demand against each policy: GPU-hours, cost, overflow, beside always-on
    at peak and API-only."""
    from margin.planner.fleet.policy import load_policies
    from margin.planner.fleet.report import as_json, as_table, compare
    from margin.planner.fleet.trace import load_profile, read_trace

    if trace_path is not None and profile_path is not None:
        raise click.UsageError("give one of --trace and --profile, not both")
    try:
        policies = load_policies(policies_path)
        if trace_path is not None:
            demand = read_trace(trace_path)
        elif profile_path is not None:
            demand = load_profile(profile_path)
        else:
            raise click.UsageError("give --trace FILE or --profile FILE")
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    comparison = compare(policies, demand, seed=seed)
    if output_format == "html":
        from margin.planner.fleet.chart import render_html

        click.echo(render_html(comparison, demand, policies), nl=False)
    elif output_format == "json":
        click.echo(orjson.dumps(as_json(comparison), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(as_table(comparison))
