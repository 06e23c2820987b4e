"""`margin keys create|list|rotate|revoke`: virtual keys, straight in the configured database (the
same store `margin serve` reads; running gateways see changes within `limits.key_cache_s`).

The secret is printed once, by create and rotate; `list` shows prefixes only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from margin.cli.help import examples
from margin.cli.output import echo_json
from margin.cli.report import CONFIG_OPTION, load_margin_config
from margin.cli.stores import run_on_store
from margin.config.defaults import resolve_data_dir
from margin.errors import ConfigError
from margin.identity.key_spec import KeySpec
from margin.identity.principals import public_view
from margin.identity.service import KeyService
from margin.storage import open_database_stores

T = TypeVar("T")


def _run(config_path: Path | None, work: Callable[[KeyService], Awaitable[T]]) -> T:
    config = load_margin_config(config_path)
    try:
        store, counters = open_database_stores(config.database.url, resolve_data_dir(config))
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    return run_on_store(store, lambda s: work(KeyService(s, cache_s=0)), name="key store", also_close=[counters])


@click.group(
    epilog=examples(
        "margin keys create --name search-bot --team search --budget-usd 50",
        "margin keys list",
        "margin keys rotate key_3f2a... --grace 3600",
        "margin keys revoke key_3f2a...",
    )
)
def keys() -> None:
    """Create, list, rotate and revoke virtual API keys."""


@keys.command(
    "create",
    epilog=examples(
        "margin keys create --name search-bot --team search",
        "margin keys create --name nightly --team data --budget-usd 20 --cost-rank 1",
        "margin keys create --name ci --config margin.yaml --data-dir /var/lib/margin",
    ),
)
@click.option("--name", default="")
@click.option("--org", default="default", show_default=True)
@click.option("--team", default="default", show_default=True)
@click.option("--user", default="default", show_default=True)
@click.option("--tag", "tags", multiple=True, help="e.g. feature:search, env:prod (repeatable)")
@click.option("--class", "endpoint_class", type=click.Choice(["interactive", "batch"]), default="interactive")
@click.option("--model", "models", multiple=True, help="allowed model group (repeatable; none = all)")
@click.option(
    "--cost-rank", "cost_ranks", type=int, multiple=True, help="allowed deployment cost_rank (repeatable; none = all)"
)
@click.option("--tier", "old_tiers", type=int, multiple=True, hidden=True, help="deprecated: --cost-rank")
@click.option("--budget-usd", type=Decimal, default=None, help="the key's own money budget")
@click.option("--budget-tokens", type=int, default=None, help="the key's own token budget")
@click.option("--window", type=click.Choice(["day", "week", "month", "rolling"]), default="month", show_default=True)
@click.option("--hours", type=int, default=None, help="length of a rolling window")
@click.option("--rpm", type=int, default=None, help="requests per minute")
@click.option("--tpm", type=int, default=None, help="tokens per minute")
@click.option("--concurrency", type=int, default=None, help="requests in flight")
@CONFIG_OPTION
def create(config_path: Path | None, **options: Any) -> None:
    """Create a key and print it (the only time the secret is shown)."""
    budget = None
    if options["budget_usd"] is not None or options["budget_tokens"] is not None:
        budget = {
            "limit_usd": options["budget_usd"],
            "limit_tokens": options["budget_tokens"],
            "window": options["window"],
            "hours": options["hours"],
        }
    raw = {
        "name": options["name"],
        "org": options["org"],
        "team": options["team"],
        "user": options["user"],
        "tags": list(options["tags"]),
        "endpoint_class": options["endpoint_class"],
        "allowed_models": list(options["models"]),
        "allowed_cost_ranks": _cost_ranks(options),
        "budget": budget,
        "requests_per_minute": options["rpm"],
        "tokens_per_minute": options["tpm"],
        "concurrency": options["concurrency"],
    }
    try:
        spec = KeySpec.model_validate(raw)
    except ValidationError as exc:
        raise click.ClickException(str(exc.errors()[0]["msg"])) from None
    record, secret = _run(config_path, lambda service: service.create(spec))
    echo_json({"key": secret, **public_view(record)})


def _cost_ranks(options: dict[str, Any]) -> list[int]:
    if options["old_tiers"]:
        click.echo("warning: --tier is deprecated (accepted until the next release); use --cost-rank", err=True)
    return [*options["cost_ranks"], *options["old_tiers"]]


@keys.command("list", epilog=examples("margin keys list", "margin keys list --config margin.yaml | jq '.[].name'"))
@CONFIG_OPTION
def list_keys(config_path: Path | None) -> None:
    """List keys (prefixes only)."""
    records = _run(config_path, lambda service: service.list())
    echo_json([public_view(r) for r in records])


@keys.command(
    "rotate",
    epilog=examples(
        "margin keys rotate key_3f2a...",
        "margin keys rotate key_3f2a... --grace 3600   # the old secret works one more hour",
    ),
)
@click.argument("key_id")
@click.option("--grace", "grace_s", type=float, default=0.0, help="seconds the old secret keeps working")
@CONFIG_OPTION
def rotate(config_path: Path | None, key_id: str, grace_s: float) -> None:
    """Give a key a new secret (same id, budgets and history); print it."""
    rotated = _run(config_path, lambda service: service.rotate(key_id, grace_s=grace_s))
    if rotated is None:
        raise click.ClickException(f"no active key {key_id}")
    record, secret = rotated
    echo_json({"key": secret, **public_view(record)})


@keys.command("revoke", epilog=examples("margin keys revoke key_3f2a..."))
@click.argument("key_id")
@CONFIG_OPTION
def revoke(config_path: Path | None, key_id: str) -> None:
    """Revoke a key (for good)."""
    record = _run(config_path, lambda service: service.revoke(key_id))
    if record is None:
        raise click.ClickException(f"no key {key_id}")
    echo_json(public_view(record))
