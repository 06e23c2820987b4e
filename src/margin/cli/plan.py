"""`margin plan PROFILE.yaml`: when does self-hosting beat the API? (see docs/planner.md)

API prices come from the same price catalog `margin serve` bills with (builtin < user prices file <
config `metering.prices`); with --from-ledger the profile's volume, shape and mix are measured from the
ledger that config names. The planner itself never opens a store: this command reads the ledger and
hands the planner plain hourly rows.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click
from pydantic import ValidationError

from margin.cli.help import examples
from margin.cli.progress import progress
from margin.cli.report import CONFIG_OPTION, WHEN_HELP, load_margin_config, open_configured_store
from margin.cli.reprice import price_catalog
from margin.config.model import MarginConfig
from margin.ledger.hourly_usage import HourlyUsage, read_hourly_usage
from margin.ledger.report import parse_when
from margin.planner.catalog import load_catalog
from margin.planner.ledger_input import LedgerError, LedgerSummary, profile_from_ledger, summarize_ledger
from margin.planner.plan import plan as build_plan
from margin.planner.plan import plan_steps
from margin.planner.profile import Profile, load_profile
from margin.planner.render import FORMATS, Format, render
from margin.storage.protocols import StorageError

DEFAULT_LEDGER_SINCE = "30d"


async def _read_ledger(
    config: MarginConfig, window: tuple[datetime, datetime], model_group: str | None
) -> list[HourlyUsage]:
    store = open_configured_store(config)
    try:
        await store.migrate()
        since, until = (moment.timestamp() for moment in window)
        return await read_hourly_usage(store, since, until, model_group)
    finally:
        await store.close()


def _measure(
    profile: Profile, config: MarginConfig, since: str, until: str, model_group: str | None
) -> tuple[Profile, LedgerSummary]:
    now = datetime.now(UTC)
    try:
        window = (parse_when(since, now), parse_when(until, now))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        rows = asyncio.run(_read_ledger(config, window, model_group))
    except StorageError as exc:
        raise click.ClickException(f"cannot read the ledger: {exc}") from None
    return profile_from_ledger(rows, profile), summarize_ledger(rows, model_group)


@click.command(
    "plan",
    epilog=examples(
        "margin plan profile.yaml                                   # a table (docs/planner.md has a profile)",
        "margin plan profile.yaml --format html --out plan.html",
        "margin plan profile.yaml --format xlsx --out plan.xlsx     # live formulas",
        "margin plan profile.yaml --from-ledger --since 30d --config margin.yaml",
    ),
)
@click.argument("profile_path", metavar="PROFILE.yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from-ledger", "from_ledger", is_flag=True,
              help="Measure volume, token sizes, hourly shape, cache hits and cost_rank mix from the ledger "
                   "(the one --config names; default: SQLite in the data dir).")  # fmt: skip
@click.option("--model-group", default=None, help="With --from-ledger: only this model group (reads raw rows).")
@click.option("--since", default=DEFAULT_LEDGER_SINCE, show_default=True,
              help=f"With --from-ledger: first hour to read: {WHEN_HELP}.")  # fmt: skip
@click.option("--until", default="now", show_default=True, help="With --from-ledger: end of the window (exclusive).")
@CONFIG_OPTION
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of stdout (required for xlsx).",
)
def plan(
    profile_path: Path,
    from_ledger: bool,
    model_group: str | None,
    since: str,
    until: str,
    config_path: Path | None,
    fmt: Format,
    out: Path | None,
) -> None:
    """Price API, self-hosted, managed and hybrid options for PROFILE.yaml at each growth scenario."""
    if fmt == "xlsx" and out is None:
        raise click.UsageError("--format xlsx writes a binary workbook: give --out FILE.xlsx")
    if model_group is not None and not from_ledger:
        raise click.UsageError("--model-group selects ledger rows: use it with --from-ledger")
    config = load_margin_config(config_path)
    try:
        profile, measured = load_profile(profile_path), None
        if from_ledger:
            profile, measured = _measure(profile, config, since, until, model_group)
        catalog = load_catalog(prices=price_catalog(config))
        with progress(plan_steps(profile) + 1, "planning") as bar:  # the last step: rendering
            built = build_plan(profile, catalog, measured, on_step=bar.advance)
            result = render(built, fmt)
            bar.advance()
    except (ValidationError, LedgerError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"{exc.name} is needed for --format {fmt}: pip install 'margin[xlsx]'") from exc
    _write(result, out)


def _write(result: str | bytes, out: Path | None) -> None:
    if out is None:
        click.echo(result if isinstance(result, str) else "", nl=False)
        return
    if isinstance(result, bytes):
        out.write_bytes(result)
    else:
        out.write_text(result, encoding="utf-8")
    click.echo(f"wrote {out}", err=True)
