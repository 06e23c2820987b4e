"""`margin simulate`: price autoscaling policies for a self-hosted tier on a demand trace
(docs/simulate.md). The trace is a file, a synthetic profile, or margin's own ledger. This module
is imported only when the command runs (cli/__init__.py), so its imports cost nothing elsewhere."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
import numpy as np

from margin.cli.help import examples
from margin.cli.output import echo_json
from margin.cli.report import CONFIG_OPTION, WHEN_HELP, load_margin_config, open_configured_store
from margin.config.model import MarginConfig
from margin.errors import ConfigError
from margin.ledger.minute_demand import read_minute_demand
from margin.ledger.report import parse_when
from margin.planner.fleet.policy import FleetPolicy, load_policies
from margin.planner.fleet.report import Comparison, as_json, as_table, compare
from margin.planner.fleet.trace import Demand, load_profile, read_trace
from margin.storage.protocols import StorageError


@click.command(
    epilog=examples(
        "margin simulate --policies policies.yaml --profile diurnal.yaml",
        "margin simulate --policies policies.yaml --trace demand.csv --format json",
        "margin simulate --policies policies.yaml --from-ledger --since 30d --model-group chat --config margin.yaml",
        "margin simulate --policies policies.yaml --profile diurnal.yaml --format html > simulate.html",
        "margin simulate --from-plan profile.yaml --profile diurnal.yaml --cold-start-min 8   # the plan's options",
    )
)
@click.option("--policies", "policies_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--from-plan",
    "plan_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A `margin plan` profile: simulate its cheapest self-hosted options instead of --policies.",
)
@click.option("--class", "class_name", default=None, help="With --from-plan: the workload class (default: the first).")
@click.option("--cold-start-min", type=click.IntRange(min=0), default=5, show_default=True, help="With --from-plan.")
@click.option("--max-replicas", type=click.IntRange(min=1), default=50, show_default=True, help="With --from-plan.")
@click.option(
    "--trace", "trace_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="minute,requests lines"
)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="a synthetic `diurnal:` profile (YAML)",
)
@click.option("--from-ledger", is_flag=True, help="Requests per minute that reached an upstream, from the ledger.")
@CONFIG_OPTION
@click.option("--since", default="30d", show_default=True, help=f"With --from-ledger: start. {WHEN_HELP}.")
@click.option("--until", default="now", show_default=True, help="With --from-ledger: end (exclusive).")
@click.option("--model-group", default=None, help="With --from-ledger: only this model group.")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "html"]), default="table")
@click.option("--seed", type=int, default=0, help="seed of the spot interruptions")
def simulate(
    policies_path: Path | None,
    plan_path: Path | None,
    class_name: str | None,
    cold_start_min: int,
    max_replicas: int,
    trace_path: Path | None,
    profile_path: Path | None,
    from_ledger: bool,
    config_path: Path | None,
    since: str,
    until: str,
    model_group: str | None,
    output_format: str,
    seed: int,
) -> None:
    """Replay per-minute demand against each policy: GPU-hours, cost, overflow, late requests,
    beside always-on at peak and API-only."""
    if sum((trace_path is not None, profile_path is not None, from_ledger)) != 1:
        raise click.UsageError("give exactly one of --trace FILE, --profile FILE and --from-ledger")
    if (policies_path is None) == (plan_path is None):
        raise click.UsageError("give one of --policies FILE and --from-plan PROFILE")
    try:
        if policies_path is not None:
            policies = load_policies(policies_path)
        elif plan_path is not None:
            policies = _plan_policies(plan_path, config_path, class_name, cold_start_min, max_replicas)
        else:
            raise click.UsageError("give --policies FILE or --from-plan PROFILE")
        demand = _demand(trace_path, profile_path, lambda: _ledger_demand(config_path, since, until, model_group))
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    _echo(output_format, compare(policies, demand, seed=seed), demand, policies)


def _demand(trace_path: Path | None, profile_path: Path | None, from_ledger: Callable[[], Demand]) -> Demand:
    if trace_path is not None:
        return read_trace(trace_path)
    if profile_path is not None:
        return load_profile(profile_path)
    return from_ledger()


def _echo(output_format: str, comparison: Comparison, demand: Demand, policies: list[FleetPolicy]) -> None:
    if output_format == "html":
        from margin.planner.fleet.chart import render_html

        click.echo(render_html(comparison, demand, policies), nl=False)
    elif output_format == "json":
        echo_json(as_json(comparison))
    else:
        click.echo(as_table(comparison))


def _plan_policies(
    plan_path: Path, config_path: Path | None, class_name: str | None, cold_start_min: int, max_replicas: int
) -> list[FleetPolicy]:
    """The plan's cheapest self-hosted options as policies, API prices from the configured catalog."""
    from margin.cli.reprice import price_catalog
    from margin.planner.catalog import load_catalog
    from margin.planner.fleet.from_plan import policies_from_plan
    from margin.planner.plan import plan
    from margin.planner.profile import load_profile as load_plan_profile

    catalog = load_catalog(prices=price_catalog(load_margin_config(config_path)))
    try:
        profile = load_plan_profile(plan_path)
    except ValueError as exc:  # pydantic's ValidationError is one
        raise click.ClickException(f"{plan_path}: {exc}") from None
    planned = plan(profile, catalog)
    return policies_from_plan(planned, class_name=class_name, cold_start_min=cold_start_min, max_replicas=max_replicas)


def _ledger_demand(config_path: Path | None, since: str, until: str, model_group: str | None) -> Demand:
    now = datetime.now(UTC)
    try:
        start, end = parse_when(since, now).timestamp(), parse_when(until, now).timestamp()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if end <= start:
        raise click.UsageError(f"--since ({since}) must be before --until ({until})")
    config = load_margin_config(config_path)
    try:
        counts = asyncio.run(_read(config, (start, end), model_group))
    except StorageError as exc:
        raise click.ClickException(f"cannot read the ledger: {exc}") from None
    if not any(counts):
        scope = f" for model group {model_group!r}" if model_group else ""
        raise click.ClickException(f"no requests in the ledger between {since} and {until}{scope}")
    return np.asarray(counts, dtype=np.int64)


async def _read(config: MarginConfig, window: tuple[float, float], model_group: str | None) -> list[int]:
    store = open_configured_store(config)
    try:
        await store.migrate()
        return await read_minute_demand(store, window[0], window[1], model_group)
    finally:
        await store.close()
