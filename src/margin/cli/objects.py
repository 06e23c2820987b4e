"""`margin teams|budgets|limits list|show|create|update|delete`, `margin audit` and `margin reload`.

Like `margin keys`, these work straight on the configured database (the same store `margin serve`
reads: running gateways apply a change within `limits.key_cache_s`), audited as actor `cli`. The
config file named by --config supplies the objects it declares, which are shown (`source: config`)
and never changed here. `margin reload` asks running gateways to read their config file again."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import BaseModel, ValidationError

from margin.budgets.object_service import ObjectService
from margin.budgets.objects import change_view, config_objects, object_view
from margin.cli.help import examples
from margin.cli.output import echo_json
from margin.cli.report import CONFIG_OPTION, load_margin_config
from margin.cli.stores import run_on_store
from margin.config.defaults import resolve_data_dir
from margin.config.environment import ADMIN_KEY
from margin.errors import ConfigError, MarginError, Unprocessable
from margin.storage.team_stores import open_object_store
from margin.storage.teams import ObjectKind

T = TypeVar("T")
ACTOR = "cli"
_FAILURES = click.Choice(["fail_closed", "fail_open"])


def validate_spec(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    """The spec, or one error naming every problem (the admin API's wording)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}".removeprefix(": ")
            for e in exc.errors(include_url=False, include_input=False)
        ]
        count = f"{len(problems)} problems: " if len(problems) > 1 else ""
        raise Unprocessable(count + "; ".join(problems)) from None


def _run(config_path: Path | None, work: Callable[[ObjectService], Awaitable[T]]) -> T:
    config = load_margin_config(config_path)
    declared = config_objects(config.teams, config.budgets, config.rate_limits)
    try:
        store = open_object_store(config.database.url, resolve_data_dir(config))
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None

    try:
        return run_on_store(
            store, lambda s: work(ObjectService(s, validate_spec, config=lambda: declared)), name="object store"
        )
    except MarginError as exc:
        raise click.ClickException(f"{exc.message} ({exc.status})") from None


def _given(options: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """The body fields of the options given (None and empty repeats are "not given")."""
    body: dict[str, Any] = {}
    for option, field in names.items():
        value = options.get(option)
        if value is None or value == ():
            continue
        body[field] = [str(v) if isinstance(v, Decimal) else v for v in value] if isinstance(value, tuple) else value
    return body


def _commands(group: click.Group, kind: ObjectKind, noun: str, fields: dict[str, str], options: list[Any]) -> None:
    """list, show, create, update and delete for one kind; `options` are its field options."""
    _read_commands(group, kind, noun)
    _write_commands(group, kind, noun, fields, options)


def _read_commands(group: click.Group, kind: ObjectKind, noun: str) -> None:
    plural = f"{noun}s" if noun != "rate limit" else "limits"

    @group.command("list", epilog=examples(f"margin {plural} list", f"margin {plural} list --limit 20 --cursor ID"))
    @click.option("--limit", type=int, default=100, show_default=True, help="items a page (1-1000)")
    @click.option("--cursor", default=None, help="the previous page's next_cursor")
    @CONFIG_OPTION
    def list_command(config_path: Path | None, limit: int, cursor: str | None) -> None:
        page = _run(config_path, lambda s: s.page(kind, limit=limit, cursor=cursor))
        echo_json({"object": "list", "data": [object_view(d) for d in page.items], "next_cursor": page.next_cursor})

    @group.command("show", epilog=examples(f"margin {plural} show ID"))
    @click.argument("object_id")
    @CONFIG_OPTION
    def show(config_path: Path | None, object_id: str) -> None:
        echo_json(object_view(_run(config_path, lambda s: s.get(kind, object_id))))

    @group.command("delete", epilog=examples(f"margin {plural} delete ID"))
    @click.argument("object_id")
    @CONFIG_OPTION
    def delete(config_path: Path | None, object_id: str) -> None:
        echo_json({**object_view(_run(config_path, lambda s: s.delete(kind, object_id, ACTOR))), "deleted": True})

    list_command.help = f"List {noun}s (config-declared and stored), by id."
    show.help = f"Show one {noun}."
    delete.help = f"Delete a {noun} (not one the config file declares)."


def _write_commands(
    group: click.Group, kind: ObjectKind, noun: str, fields: dict[str, str], options: list[Any]
) -> None:
    def create(config_path: Path | None, **given: Any) -> None:
        body = _given(given, fields)
        echo_json(object_view(_run(config_path, lambda s: s.create(kind, body, ACTOR))))

    def update(config_path: Path | None, object_id: str, **given: Any) -> None:
        body = _given(given, fields)
        for flag, field in (("clear_keys", "keys"), ("clear_users", "users")):
            if given.pop(flag, False):
                body[field] = []
        if not body:
            raise click.UsageError("give at least one field to change")
        echo_json(object_view(_run(config_path, lambda s: s.update(kind, object_id, body, ACTOR))))

    create.__doc__ = f"Create a {noun}."
    update.__doc__ = f"Change the fields given of a {noun}; the others stay."
    clears = [
        click.option("--clear-keys", is_flag=True, help="no member keys"),
        click.option("--clear-users", is_flag=True, help="no member users"),
    ]
    for function, extra in ((create, []), (update, clears if kind == "team" else [])):
        for option in reversed([*options, *extra]):
            function = option(function)
        if function.__name__ == "update":
            function = click.argument("object_id")(function)
        name = function.__name__
        epilog = examples(*(CREATE_EXAMPLES if name == "create" else UPDATE_EXAMPLES)[kind])
        group.command(name, epilog=epilog)(CONFIG_OPTION(function))


CREATE_EXAMPLES: dict[ObjectKind, tuple[str, ...]] = {
    "team": (
        "margin teams create --name search --user ana --user bo",
        "margin teams create --name data --key key_3f2a...",
    ),
    "budget": (
        "margin budgets create --scope team:search --usd 500 --window month",
        "margin budgets create --scope tag:env:dev --tokens 2000000 --window rolling --hours 24",
    ),
    "limit": ("margin limits create --scope team:search --rpm 600 --concurrency 20",),
}
UPDATE_EXAMPLES: dict[ObjectKind, tuple[str, ...]] = {
    "team": ("margin teams update search --user ana --user cy   # the member list is replaced",
             "margin teams update search --clear-keys"),
    "budget": ("margin budgets update bud_1a2b3c... --usd 800",),
    "limit": ("margin limits update lim_1a2b3c... --rpm 1200",),
}  # fmt: skip


@click.group(
    epilog=examples("margin teams list", "margin teams create --name search --user ana", "margin audit --kind team")
)
def teams() -> None:
    """Teams and their members (keys, users): a member's requests count as the team's."""


@click.group(epilog=examples("margin budgets list", "margin budgets create --scope team:search --usd 500"))
def budgets() -> None:
    """Budgets (USD or tokens over a window) on a scope: global, org:, team:, user:, key:, tag:, deployment:."""


@click.group(epilog=examples("margin limits list", "margin limits create --scope key:* --rpm 600"))
def limits() -> None:
    """Rate limits (requests and tokens per minute, requests in flight) on a scope."""


_commands(teams, "team", "team", {"name": "name", "description": "description", "keys": "keys", "users": "users"}, [
    click.option("--name", default=None, help="the team's name (its id; create only)"),
    click.option("--description", default=None),
    click.option("--key", "keys", multiple=True, help="a member key id (repeatable; replaces the list)"),
    click.option("--user", "users", multiple=True, help="a member user (repeatable; replaces the list)"),
])  # fmt: skip
_commands(budgets, "budget", "budget", {"scope": "scope", "usd": "limit_usd", "tokens": "limit_tokens",
          "window": "window", "hours": "hours", "thresholds": "thresholds", "on_store_failure": "on_store_failure"}, [
    click.option("--scope", default=None, help="e.g. team:search, team:* (one budget per team), global"),
    click.option("--usd", type=Decimal, default=None, help="limit in USD"),
    click.option("--tokens", type=int, default=None, help="limit in tokens"),
    click.option("--window", type=click.Choice(["day", "week", "month", "rolling"]), default=None),
    click.option("--hours", type=int, default=None, help="length of a rolling window"),
    click.option("--threshold", "thresholds", type=float, multiple=True, help="alert at this fraction (repeatable)"),
    click.option("--on-store-failure", type=_FAILURES, default=None),
])  # fmt: skip
_commands(limits, "limit", "rate limit", {"scope": "scope", "rpm": "requests_per_minute", "tpm": "tokens_per_minute",
          "concurrency": "concurrency", "on_store_failure": "on_store_failure"}, [
    click.option("--scope", default=None, help="e.g. key:*, team:search, deployment:local"),
    click.option("--rpm", type=int, default=None, help="requests per minute"),
    click.option("--tpm", type=int, default=None, help="tokens per minute"),
    click.option("--concurrency", type=int, default=None, help="requests in flight"),
    click.option("--on-store-failure", type=_FAILURES, default=None),
])  # fmt: skip


@click.command(
    epilog=examples(
        "margin audit",
        "margin audit --kind budget --limit 20",
        "margin audit --kind team --id search",
        "margin audit --cursor 120   # older changes: the previous page's next_cursor",
    )
)
@click.option("--kind", type=click.Choice(["team", "budget", "limit", "drain"]), default=None)
@click.option("--id", "object_id", default=None, help="one object's changes")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--cursor", type=int, default=None, help="the previous page's next_cursor")
@CONFIG_OPTION
def audit(config_path: Path | None, kind: ObjectKind | None, object_id: str | None, limit: int,
          cursor: int | None) -> None:  # fmt: skip
    """Who changed which team, budget or rate limit, when, and what it was before and after."""
    changes, older = _run(config_path, lambda s: s.changes(kind=kind, object_id=object_id, limit=limit, before=cursor))
    echo_json({"object": "list", "data": [change_view(c) for c in changes],
           "next_cursor": None if older is None else str(older)})  # fmt: skip


@click.command(
    "reload",
    epilog=examples(
        "margin reload --url http://127.0.0.1:8080        # MARGIN_ADMIN_KEY: the admin key",
        "margin reload --url http://10.0.0.5:8080 --url http://10.0.0.6:8080   # every replica",
        "margin reload --pid $(pgrep -f 'margin serve')   # SIGHUP, as kill -HUP does",
    ),
)
@click.option("--url", "urls", multiple=True, help="a running gateway (repeatable: one per replica)")
@click.option("--admin-key", envvar=ADMIN_KEY.name, default=None, help=f"admin key for --url (env {ADMIN_KEY.name})")
@click.option("--pid", type=int, default=None, help="send SIGHUP to this process instead")
def reload_command(urls: tuple[str, ...], admin_key: str | None, pid: int | None) -> None:
    """Make running gateways read their config file's teams, budgets and rate limits again."""
    if pid is None and not urls:
        raise click.UsageError("give --url (one per replica) or --pid")
    if pid is not None:
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise click.ClickException(f"SIGHUP to {pid}: {exc.strerror}") from None
        click.echo(f"SIGHUP sent to {pid}: its log says what changed", err=True)
    for url in urls:
        echo_json({"url": url, **_post_reload(url, admin_key)})


def _post_reload(url: str, admin_key: str | None) -> dict[str, Any]:
    request = urllib.request.Request(url.rstrip("/") + "/admin/reload", method="POST", data=b"")
    if admin_key:
        request.add_header("authorization", f"Bearer {admin_key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body: dict[str, Any] = json.loads(response.read())
            return body
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise click.ClickException(f"{url}: {exc.code} {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise click.ClickException(f"{url}: {exc}") from None
