"""`margin reprice`: recompute stored costs with today's prices after a price correction."""

from __future__ import annotations

import asyncio
import getpass
from datetime import UTC, datetime
from pathlib import Path

import click

from margin.cli.help import examples
from margin.cli.report import CONFIG_OPTION, WHEN_HELP, load_margin_config, open_configured_store
from margin.config.defaults import resolve_data_dir
from margin.config.model import MarginConfig
from margin.errors import ConfigError
from margin.ledger.report import parse_when
from margin.ledger.reprice import RepriceResult, reprice_ledger
from margin.metering.catalog import PriceCatalog, load_catalog
from margin.metering.pricebook import PriceBook
from margin.metering.unknown import UnknownPricePolicy
from margin.storage.protocols import LedgerStore, StorageError


def _actor() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def price_catalog(config: MarginConfig) -> PriceCatalog:
    """The price catalog `margin serve` builds from this config: builtin < user file < metering.prices."""
    metering = config.metering
    user_file = Path(metering.catalog_file) if metering.catalog_file else resolve_data_dir(config) / "prices.yaml"
    try:
        return load_catalog(user_file=user_file, overrides=metering.prices)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


def price_sources(config: MarginConfig) -> tuple[PriceBook, PriceCatalog]:
    """The same price book and catalog `margin serve` builds from this config."""
    catalog = price_catalog(config)
    return PriceBook(config.deployments, catalog, UnknownPricePolicy(config.metering.unknown_price)), catalog


async def _reprice(
    store: LedgerStore, config: MarginConfig, window: tuple[datetime, datetime], actor: str, dry_run: bool
) -> RepriceResult:
    book, catalog = price_sources(config)
    try:
        await store.migrate()
        since, until = (moment.timestamp() for moment in window)
        return await reprice_ledger(store, book, catalog, since=since, until=until, actor=actor, dry_run=dry_run)
    finally:
        await store.close()


def _summary(result: RepriceResult, dry_run: bool) -> str:
    verb = "would change" if dry_run else "changed"
    lines = [
        f"{result.rows_scanned} rows scanned, {result.rows_changed} {verb}, "
        f"{result.rows_unpriced} without a price now (left as they were), {result.rows_skipped} skipped "
        "(GPU-time priced or cache hits)",
        f"total: ${result.old_total:f} -> ${result.new_total:f}",
    ]
    if result.rows_changed:
        lines.append(f"price versions: {sorted(result.old_versions)} -> {sorted(result.new_versions)}")
    if result.audit is not None:
        lines.append(f"audit entry recorded for {result.audit.actor}")
    return "\n".join(lines)


@click.command(
    epilog=examples(
        "margin reprice --since 7d --dry-run            # what would change, and the totals",
        "margin reprice --since 2026-11-01 --actor alice --config margin.yaml",
    )
)
@click.option("--since", required=True, help=f"Reprice rows from this time: {WHEN_HELP}.")
@click.option("--until", default="now", show_default=True, help="Up to this time (exclusive), same forms.")
@click.option("--dry-run", is_flag=True, help="Show what would change without writing anything.")
@click.option("--actor", default=None, help="Who to record in the audit entry (default: the OS user).")
@CONFIG_OPTION
def reprice(since: str, until: str, dry_run: bool, actor: str | None, config_path: Path | None) -> None:
    """Recompute stored costs from stored usage with the current price catalog and config prices."""
    now = datetime.now(UTC)
    try:
        window = (parse_when(since, now), parse_when(until, now))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    config = load_margin_config(config_path)
    store = open_configured_store(config)
    try:
        result = asyncio.run(_reprice(store, config, window, actor or _actor(), dry_run))
    except StorageError as exc:
        raise click.ClickException(f"cannot reprice the ledger: {exc}") from None
    click.echo(_summary(result, dry_run))
