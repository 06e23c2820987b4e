"""`margin migrate [--status]`: where the configured database (and the SQLite response cache) stand
against margin's named migrations, and applying the pending ones.

The gateway migrates on start-up anyway; this is for looking before a rollout, and for upgrading a
shared PostgreSQL once rather than racing replicas (they would wait on the same advisory lock)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click

from margin.caching.backends import sqlite_cache_file
from margin.cli.help import examples
from margin.cli.output import echo_json
from margin.cli.report import CONFIG_OPTION, load_margin_config
from margin.config.defaults import resolve_data_dir
from margin.config.model import MarginConfig
from margin.errors import ConfigError
from margin.storage.protocols import StorageError
from margin.storage.schema import SchemaStatus, SchemaTarget, schema_status, schema_targets


@click.command(
    epilog=examples(
        "margin migrate --status                       # what is applied and what is pending",
        "margin migrate --config margin.yaml           # apply pending migrations",
        "margin migrate --database-url postgresql://margin@db/margin --json",
    )
)
@click.option("--status", "show_status", is_flag=True, help="List each migration, applied or pending; change nothing.")
@click.option(
    "--database-url", default=None, help="Instead of the config's database.url (sqlite:///PATH, postgresql://...)."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@CONFIG_OPTION
def migrate(show_status: bool, database_url: str | None, as_json: bool, config_path: Path | None) -> None:
    """Apply pending migrations to the configured database and SQLite cache (or list them: --status)."""
    targets = _targets(load_margin_config(config_path), database_url)
    try:
        outcomes = asyncio.run(_run(targets, apply=not show_status))
    except StorageError as exc:
        raise click.ClickException(f"cannot reach the database: {exc}") from None
    if as_json:
        body = [_as_dict(status, applied_now) for status, applied_now in outcomes]
        echo_json(body)
    else:
        click.echo(render(outcomes))


def _targets(config: MarginConfig, database_url: str | None) -> list[SchemaTarget]:
    data_dir = resolve_data_dir(config)
    sqlite_cache = config.cache.enabled and config.cache.backend == "sqlite"
    try:
        cache_file = sqlite_cache_file(config.cache, data_dir) if sqlite_cache else None
        return schema_targets(database_url or config.database.url, data_dir, cache_file=cache_file)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None


Outcome = tuple[SchemaStatus, list[str]]  # a schema's status, and the migrations this run applied


async def _run(targets: list[SchemaTarget], *, apply: bool) -> list[Outcome]:
    """Each target's status, after applying its pending migrations unless only looking."""
    outcomes: list[Outcome] = []
    try:
        for target in targets:
            applied_now = await target.apply() if apply else []
            outcomes.append((await schema_status(target), applied_now))
    finally:
        for target in targets:
            await target.close()
    return outcomes


def _when(applied_at: float | None) -> str:
    if applied_at is None:
        return ""
    return datetime.fromtimestamp(applied_at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render(outcomes: list[Outcome]) -> str:
    """One block per schema: each migration, applied (when) or pending; then the pending count."""
    width = max((len(state.name) for status, _ in outcomes for state in status.states), default=0)
    lines: list[str] = []
    for status, applied_now in outcomes:
        lines.append(f"{status.label}: {status.location}")
        for state in status.states:
            mark = "applied" if state.applied else "pending"
            note = "  (just now)" if state.name in applied_now else ""
            if not state.known:
                note = "  (not shipped with this margin: a newer release applied it)"
            lines.append(f"  {state.name:<{width}}  {mark:<7}  {_when(state.applied_at)}{note}".rstrip())
    pending = sum(len(status.pending) for status, _ in outcomes)
    lines.append(f"{pending} pending (run `margin migrate` to apply)" if pending else "up to date")
    return "\n".join(lines)


def _as_dict(status: SchemaStatus, applied_now: list[str]) -> dict[str, object]:
    return {
        "schema": status.label,
        "location": status.location,
        "applied_now": applied_now,
        "migrations": [
            {"name": s.name, "applied": s.applied, "applied_at": s.applied_at, "known": s.known} for s in status.states
        ],
    }
