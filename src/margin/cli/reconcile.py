"""`margin reconcile`: list the ledger rows of attempts whose replica died before their outcome was
known, and settle each with its actual figures (audited). The library is margin.ledger.reconcile."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from margin.cli.help import examples
from margin.cli.report import CONFIG_OPTION, WHEN_HELP, load_margin_config, open_configured_store
from margin.cli.reprice import _actor, price_sources
from margin.config.model import MarginConfig
from margin.ledger.reconcile import Actual, ReconcileError, reconcile, unreconciled_rows
from margin.ledger.report import parse_when
from margin.storage.ledger_row import LedgerRow
from margin.storage.protocols import AuditEntry, StorageError
from margin.types import Usage


def _window(since: str) -> tuple[float, float]:
    now = datetime.now(UTC)
    try:
        return parse_when(since, now).timestamp(), now.timestamp() + 60
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


async def _list(config: MarginConfig, since: float, until: float) -> list[LedgerRow]:
    store = open_configured_store(config)
    try:
        await store.migrate()
        return await unreconciled_rows(store, since, until)
    finally:
        await store.close()


async def _settle(
    config: MarginConfig, attempt_id: str, since: float, actual: Actual, actor: str, note: str
) -> AuditEntry:
    store = open_configured_store(config)
    book, catalog = price_sources(config)
    try:
        await store.migrate()
        found = [row for row in await unreconciled_rows(store, since, time_now()) if row.attempt_id == attempt_id]
        if not found:
            raise ReconcileError(
                f"no unreconciled row {attempt_id!r} since the given time (see `margin reconcile list`)"
            )
        return await reconcile(store, book, catalog, found[0], actual, actor=actor, note=note)
    finally:
        await store.close()


def time_now() -> float:
    return datetime.now(UTC).timestamp() + 60


@click.group(
    epilog=examples(
        "margin reconcile list --since 7d",
        "margin reconcile settle req_1:0 --input 1200 --output 300 --note 'provider dashboard'",
    )
)
def reconcile_group() -> None:
    """Ledger rows of attempts whose outcome is unknown (their replica died mid-call)."""


@reconcile_group.command(
    "list", epilog=examples("margin reconcile list", "margin reconcile list --since 7d --config margin.yaml")
)
@click.option("--since", default="30d", show_default=True, help=f"Rows from this time: {WHEN_HELP}.")
@CONFIG_OPTION
def list_rows(since: str, config_path: Path | None) -> None:
    """List unreconciled rows: attempt id, time, key, deployment, reserved amount."""
    start, until = _window(since)
    try:
        rows = asyncio.run(_list(load_margin_config(config_path), start, until))
    except StorageError as exc:
        raise click.ClickException(f"cannot read the ledger: {exc}") from None
    for row in rows:
        when = datetime.fromtimestamp(row.ts, UTC).isoformat(timespec="seconds")
        click.echo(f"{row.attempt_id}\t{when}\t{row.key_id}\t{row.deployment}\t{row.model}\t${row.cost_total:f}")
    click.echo(f"{len(rows)} unreconciled rows", err=True)


@reconcile_group.command(
    "settle",
    epilog=examples(
        "margin reconcile settle req_1:0 --input 1200 --output 300 --note 'usage export'",
        "margin reconcile settle req_1:0 --cost 0.0042 --note 'invoice line 17'",
        "margin reconcile settle req_1:0 --as-reserved",
    ),
)
@click.argument("attempt_id")
@click.option("--input", "input_tokens", type=int, default=None, help="Uncached input tokens the provider billed.")
@click.option("--cache-read", type=int, default=0, show_default=True, help="Cache-read input tokens.")
@click.option("--cache-write", type=int, default=0, show_default=True, help="Cache-write input tokens.")
@click.option("--output", "output_tokens", type=int, default=None, help="Output tokens (without reasoning).")
@click.option("--reasoning", type=int, default=0, show_default=True, help="Reasoning output tokens.")
@click.option("--cost", "cost_usd", default=None, help="The amount in USD instead of token counts.")
@click.option("--as-reserved", is_flag=True, help="Accept the reserved amount as the actual one.")
@click.option("--since", default="30d", show_default=True, help=f"Look for the row from this time: {WHEN_HELP}.")
@click.option("--note", default="", help="Where the figures come from (kept in the audit entry).")
@click.option("--actor", default=None, help="Who to record in the audit entry (default: the OS user).")
@CONFIG_OPTION
def settle(
    attempt_id: str, input_tokens: int | None, cache_read: int, cache_write: int, output_tokens: int | None,
    reasoning: int, cost_usd: str | None, as_reserved: bool, since: str, note: str, actor: str | None,
    config_path: Path | None,
) -> None:  # fmt: skip
    """Correct one unreconciled row to its actual usage (priced), an amount, or the reserved amount."""
    by_usage = input_tokens is not None or output_tokens is not None
    if sum((by_usage, cost_usd is not None, as_reserved)) != 1:
        raise click.UsageError("give token counts (--input/--output ...), --cost, or --as-reserved: exactly one")
    actual = Actual()
    if by_usage:
        usage = Usage(input_uncached=input_tokens or 0, input_cache_read=cache_read, input_cache_write=cache_write,
                      output=output_tokens or 0, output_reasoning=reasoning)  # fmt: skip
        actual = Actual(usage=usage)
    elif cost_usd is not None:
        try:
            actual = Actual(cost_usd=Decimal(cost_usd))
        except InvalidOperation:
            raise click.UsageError(f"--cost {cost_usd!r} is not an amount") from None
    config = load_margin_config(config_path)
    try:
        entry = asyncio.run(_settle(config, attempt_id, _window(since)[0], actual, actor or _actor(), note))
    except ReconcileError as exc:
        raise click.ClickException(str(exc)) from None
    except StorageError as exc:
        raise click.ClickException(f"cannot update the ledger: {exc}") from None
    click.echo(f"{attempt_id}: ${entry.old_total:f} -> ${entry.new_total:f} (audit entry recorded for {entry.actor})")
