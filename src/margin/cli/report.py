"""`margin report`: spend, traffic, cache savings and latency from the ledger's rollups."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from margin.config import load_config
from margin.config.defaults import resolve_data_dir
from margin.config.model import MarginConfig
from margin.errors import ConfigError
from margin.ledger.report import (
    DEFAULT_SINCE,
    DEPRECATED_DIMENSIONS,
    REPORT_BY_CHOICES,
    build_spend_report,
    report_window,
)
from margin.ledger.report_render import FORMATS, ReportFormat, render
from margin.storage import open_ledger_store
from margin.storage.protocols import LedgerStore, StorageError

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="margin config file; its database.url names the ledger (default: SQLite in the data dir).",
)
WHEN_HELP = "now, 90m, 24h, 7d, 2w, or an ISO date/datetime (UTC unless it names a zone)"


def load_margin_config(config_path: Path | None) -> MarginConfig:
    try:
        return load_config(config_path) if config_path is not None else MarginConfig()
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


def open_configured_store(config: MarginConfig) -> LedgerStore:
    try:
        return open_ledger_store(config.database.url, resolve_data_dir(config))
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


async def _report_text(store: LedgerStore, since: str, until: str, group_by: str, fmt: ReportFormat) -> str:
    try:
        start, end = report_window(since, until)
        await store.migrate()
        report = await build_spend_report(store, since=start, until=end, group_by=group_by)
    finally:
        await store.close()
    return render(report, fmt)


@click.command()
@click.option("--since", default=DEFAULT_SINCE, show_default=True, help=f"Start of the window: {WHEN_HELP}.")
@click.option("--until", default="now", show_default=True, help="End of the window (exclusive), same forms.")
@click.option("--by", "group_by", type=click.Choice(REPORT_BY_CHOICES), default="model", show_default=True,
              help="cost_rank: each deployment's cost_rank (`tier` is its deprecated name).")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@CONFIG_OPTION
def report(since: str, until: str, group_by: str, fmt: ReportFormat, config_path: Path | None) -> None:
    """Spend, requests, tokens, cost per request, shares, cache savings and latency percentiles."""
    if group_by in DEPRECATED_DIMENSIONS:
        new = DEPRECATED_DIMENSIONS[group_by]
        click.echo(f"warning: --by {group_by} is deprecated (until the next release): use --by {new}", err=True)
    store = open_configured_store(load_margin_config(config_path))
    try:
        click.echo(asyncio.run(_report_text(store, since, until, group_by, fmt)))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except StorageError as exc:
        raise click.ClickException(f"cannot read the ledger: {exc}") from None
