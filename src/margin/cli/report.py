"""`margin report`: spend, traffic, cache savings and latency from the ledger's rollups."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import click

from margin.cli.help import examples
from margin.cli.options import config_option
from margin.cli.options import load_margin_config as load_margin_config  # re-exported for the ledger commands
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
from margin.ledger.report_focus import focus_charges, render_focus_csv
from margin.ledger.report_labels import cost_rank_labels, deployment_labels, key_labels
from margin.ledger.report_render import FORMATS, ReportFormat, render
from margin.storage import open_database_stores, open_ledger_store
from margin.storage.protocols import LedgerStore, StorageError

OutputFormat = ReportFormat | Literal["focus"]  # focus: FinOps FOCUS CSV (ledger/report_focus.py)


# `--config FILE` and `--data-dir DIR`: the commands that read margin's database take both
CONFIG_OPTION = config_option(
    "margin config file; its database.url names the ledger (default: SQLite in the data dir)."
)


WHEN_HELP = "now, 90m, 24h, 7d, 2w, or an ISO date/datetime (UTC unless it names a zone)"


def open_configured_store(config: MarginConfig) -> LedgerStore:
    try:
        return open_ledger_store(config.database.url, resolve_data_dir(config))
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


async def group_labels(config: MarginConfig, group_by: str) -> dict[str, str]:
    """Names for the groups: keys from the key store, cost ranks and deployments from the config."""
    dimension = DEPRECATED_DIMENSIONS.get(group_by, group_by)
    if dimension == "cost_rank":
        return cost_rank_labels(config)
    if dimension == "deployment":
        return deployment_labels(config)
    if dimension != "key":
        return {}  # teams, tags and models are names already
    try:
        keys, counters = open_database_stores(config.database.url, resolve_data_dir(config))
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    try:
        await keys.migrate()
        return key_labels(await keys.list_keys())
    finally:
        await keys.close()
        await counters.close()


async def _report_output(
    store: LedgerStore, config: MarginConfig, window: tuple[str, str], group_by: str, fmt: OutputFormat, wide: bool
) -> str | bytes:
    try:
        start, end = report_window(*window)
        await store.migrate()
        if fmt == "focus":  # per-charge rows of their own (every dimension), not the --by groups
            return render_focus_csv(await focus_charges(store.query_rows(start.timestamp(), end.timestamp())))
        labels = await group_labels(config, group_by)
        report = await build_spend_report(store, since=start, until=end, group_by=group_by, labels=labels)
    finally:
        await store.close()
    return render(report, fmt, wide=wide)


@click.command(
    epilog=examples(
        "margin report                                     # the last 7 days by model",
        "margin report --since 24h --by team               # 402/429: refused by budgets, rate limits",
        "margin report --by key --wide                     # keys by name, every column",
        "margin report --since 24h --by batch              # each batch's lines (the total: all traffic)",
        "margin report --since 2026-11-01 --until 2026-12-01 --format xlsx --out november.xlsx",
        "margin report --config margin.yaml --format json | jq .total",
        "margin report --since 2026-11-01 --until 2026-12-01 --format focus --out november-focus.csv",
    )
)
@click.option("--since", default=DEFAULT_SINCE, show_default=True, help=f"Start of the window: {WHEN_HELP}.")
@click.option("--until", default="now", show_default=True, help="End of the window (exclusive), same forms.")
@click.option("--by", "group_by", type=click.Choice(REPORT_BY_CHOICES), default="model", show_default=True,
              help="cost_rank: each deployment's cost_rank (`tier` is its deprecated name).")  # fmt: skip
@click.option("--format", "fmt", type=click.Choice([*FORMATS, "focus"]), default="table", show_default=True,
              help="xlsx needs --out (and the `xlsx` extra); focus: FinOps FOCUS CSV, one row per day and charge "
                   "(ignores --by).")  # fmt: skip
@click.option("--wide", is_flag=True, help="Every column in the table (the default keeps to 120 columns).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of stdout (required for xlsx).")  # fmt: skip
@CONFIG_OPTION
def report(
    since: str, until: str, group_by: str, fmt: OutputFormat, wide: bool, out: Path | None, config_path: Path | None
) -> None:
    """Spend, requests (served, and refused by margin's budgets and rate limits), tokens, cost per
    request, shares, cache savings and latency percentiles, per key (by name), team, tag, model,
    cost_rank, deployment or batch."""
    if fmt == "xlsx" and out is None:
        raise click.UsageError("--format xlsx writes a binary workbook: give --out FILE.xlsx")
    if group_by in DEPRECATED_DIMENSIONS:
        new = DEPRECATED_DIMENSIONS[group_by]
        click.echo(f"warning: --by {group_by} is deprecated (until the next release): use --by {new}", err=True)
    config = load_margin_config(config_path)
    store = open_configured_store(config)
    try:
        result = asyncio.run(_report_output(store, config, (since, until), group_by, fmt, wide))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except StorageError as exc:
        raise click.ClickException(f"cannot read the ledger: {exc}") from None
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"{exc.name} is needed for --format {fmt}: pip install 'margin[xlsx]'") from exc
    write_output(result, out)


def write_output(result: str | bytes, out: Path | None) -> None:
    if out is None:
        click.echo(result)
        return
    if isinstance(result, bytes):
        out.write_bytes(result)
    else:
        out.write_text(result if result.endswith("\n") else result + "\n", encoding="utf-8")
    click.echo(f"wrote {out}", err=True)
