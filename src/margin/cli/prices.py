"""`margin prices`: show a model's price and import LiteLLM's price file as a user catalog."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from margin.cli.help import examples
from margin.cli.options import data_dir_option
from margin.errors import ConfigError
from margin.metering.catalog import (
    PriceCatalog,
    default_user_catalog_path,
    load_builtin_catalog,
    load_catalog_file,
    merge_catalogs,
    write_catalog_file,
)
from margin.metering.litellm_import import MAX_CHANGE_RATIO, ImportPlan, PriceChange, plan_import
from margin.metering.price_model import ModelPrice, bucket_prices_to_mapping, format_price

MAX_LISTED = 20


def _current_catalog(user_file: Path) -> tuple[PriceCatalog, PriceCatalog | None]:
    """(effective catalog, the user catalog alone if the file exists)."""
    try:
        builtin = load_builtin_catalog()
        if not user_file.exists():
            return builtin, None
        user = load_catalog_file(user_file)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    return merge_catalogs(builtin, user), user


def _describe_change(change: PriceChange) -> str:
    ratio = change.ratio
    factor = "from zero" if ratio is None else f"x{format_price(round(ratio, 3))}"
    old, new = format_price(change.old), format_price(change.new)
    return f"  {change.model} {change.bucket}: {old} -> {new} ({factor})"


def _print_summary(plan: ImportPlan, source: Path) -> None:
    click.echo(
        f"{source}: {len(plan.entries)} priced per token "
        f"({len(plan.added)} new, {len(plan.changed)} changed, {len(plan.unchanged)} unchanged), "
        f"{len(plan.skipped)} skipped (not priced per token)"
    )
    lines = [
        line
        for name, changes in plan.changed.items()
        for line in ([_describe_change(c) for c in changes] or [f"  {name}: long-context tiers or batch multiplier"])
    ]
    for line in lines[:MAX_LISTED]:
        click.echo(line)
    if len(lines) > MAX_LISTED:
        click.echo(f"  ... and {len(lines) - MAX_LISTED} more price changes")
    for name in plan.added[:MAX_LISTED]:
        click.echo(f"  + {name}")
    if len(plan.added) > MAX_LISTED:
        click.echo(f"  ... and {len(plan.added) - MAX_LISTED} more new models")


def _read_litellm_file(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.ClickException(f"cannot read {path} as JSON: {exc}") from None


@click.group(
    epilog=examples(
        "margin prices show gpt-4o",
        "margin prices import model_prices_and_context_window.json --dry-run",
    )
)
def prices() -> None:
    """Inspect the price catalog and refresh it from LiteLLM's price file."""


@prices.command(
    "import",
    epilog=examples(
        "margin prices import model_prices_and_context_window.json --dry-run",
        "margin prices import model_prices_and_context_window.json            # into <data dir>/prices.yaml",
        "margin prices import prices.json --data-dir /var/lib/margin --force",
    ),
)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@data_dir_option
@click.option("--force", is_flag=True, help=f"Accept price changes of more than {MAX_CHANGE_RATIO}x.")
@click.option(
    "--catalog-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="User catalog to write (default: the user data dir's prices.yaml).",
)
@click.option("--dry-run", is_flag=True, help="Print the summary without writing anything.")
def import_prices(file: Path, force: bool, catalog_out: Path | None, dry_run: bool) -> None:
    """Import FILE, in LiteLLM's model_prices_and_context_window.json format, as user overrides."""
    out = catalog_out or default_user_catalog_path()
    current, user = _current_catalog(out)
    today = date.today()
    try:
        plan = plan_import(_read_litellm_file(file), current, today=today, version="pending")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _print_summary(plan, file)
    refused = plan.refused
    if refused and not force:
        click.echo(f"Refused: {len(refused)} price change(s) exceed {MAX_CHANGE_RATIO}x (use --force):", err=True)
        for change in refused[:MAX_LISTED]:
            click.echo(_describe_change(change), err=True)
        raise click.exceptions.Exit(1)
    if dry_run:
        click.echo("Dry run: nothing written.")
        return
    _write_user_catalog(out, user, plan.entries, today)


def _write_user_catalog(out: Path, user: PriceCatalog | None, imported: list[ModelPrice], today: date) -> None:
    entries = dict(user.entries) if user is not None else {}
    entries.update((entry.name, entry) for entry in imported)
    version = f"litellm-import-{today.isoformat()}"
    try:
        write_catalog_file(out, version, entries.values())
    except OSError as exc:
        raise click.ClickException(f"cannot write {out}: {exc.strerror}") from None
    click.echo(f"Wrote {len(entries)} entries to {out} (version {version}).")


def _price_lines(entry: ModelPrice) -> list[str]:
    lines = [f"  {bucket}: ${value} / 1M tokens" for bucket, value in bucket_prices_to_mapping(entry.prices).items()]
    for tier in entry.long_context:
        tier_prices = ", ".join(f"{k} ${v}" for k, v in bucket_prices_to_mapping(tier.prices).items())
        lines.append(f"  prompt > {tier.above_input_tokens} tokens: {tier_prices}")
    if entry.batch_multiplier is not None:
        lines.append(f"  batch: x{format_price(entry.batch_multiplier)}")
    return lines


@prices.command(
    "show",
    epilog=examples("margin prices show gpt-4o", "margin prices show qwen2.5-7b-instruct-turbo --provider together"),
)
@click.argument("model")
@data_dir_option
@click.option("--provider", default=None, help="Provider to qualify MODEL with (e.g. together).")
@click.option(
    "--catalog",
    "catalog_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="User catalog to layer over the builtin one (default: the user data dir's prices.yaml).",
)
def show(model: str, provider: str | None, catalog_file: Path | None) -> None:
    """Print MODEL's price entry with its source and dates."""
    catalog, _ = _current_catalog(catalog_file or default_user_catalog_path())
    match = catalog.resolve(model, provider)
    if match is None:
        raise click.ClickException(f"no price for {model!r} in catalog {catalog.version}")
    entry = match.price
    click.echo(f"{entry.name} ({entry.provider}), matched by {match.matched_by}")
    click.echo(f"  version: {entry.version} ({entry.origin})")
    for line in _price_lines(entry):
        click.echo(line)
    if entry.aliases:
        click.echo(f"  aliases: {', '.join(entry.aliases)}")
    click.echo(f"  source: {entry.source or '-'}")
    click.echo(f"  effective_from: {entry.effective_from or '-'}")
    verified = entry.verified_at or "not verified in this release"
    click.echo(f"  verified_at: {verified}{f' against {entry.checked_against}' if entry.checked_against else ''}")
    if entry.notes:
        click.echo(f"  notes: {entry.notes}")
