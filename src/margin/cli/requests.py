"""`margin requests show ID|list`: the per-request log, straight from the configured ledger (the
same rows `GET /admin/requests` reads). Each request is explained: the route stage's decision (rule
or score and threshold), the fallbacks taken and why, the cache decision, every attempt's cost.

Prompts and answers are never stored, so never shown."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from margin.cli.help import examples
from margin.cli.output import echo_json
from margin.cli.report import CONFIG_OPTION, WHEN_HELP, load_margin_config, open_configured_store
from margin.cli.stores import run_on_store
from margin.ledger.request_view import STATUSES, explain_request, list_requests, request_query
from margin.storage.protocols import LedgerStore

T = TypeVar("T")
_LIST_COLUMNS = (("at", 23), ("request_id", 36), ("team", 12), ("status", 8), ("route_policy", 10),
                 ("deployment", 20))  # fmt: skip


def _run(config_path: Path | None, work: Callable[[LedgerStore], Awaitable[T]]) -> T:
    return run_on_store(open_configured_store(load_margin_config(config_path)), work, name="ledger")


@click.group(
    epilog=examples(
        "margin requests list --team search --since 24h",
        "margin requests show req_a2f2672da8411808da005b65  # the id in a response's x-request-id",
    )
)
def requests() -> None:
    """The per-request log: list requests and explain one (route, fallbacks, cache, cost)."""


@requests.command(
    epilog=examples(
        "margin requests show req_a2f2672da8411808da005b65",
        "margin requests show req_a2f2672da8411808... --format json | jq .decision",
        "margin requests show req_a2f2672da8411808... --config margin.yaml",
    )
)
@click.argument("request_id")
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
@CONFIG_OPTION
def show(request_id: str, fmt: str, config_path: Path | None) -> None:
    """Explain one request: who sent it, why it was routed where it went, the fallbacks taken and
    why, the cache decision and similarity, and each attempt with its cost."""
    found = _run(config_path, lambda store: explain_request(store, request_id))
    if found is None:
        raise click.ClickException(f"the ledger has no request {request_id!r}")
    if fmt == "json":
        echo_json(found)
        return
    click.echo(_render_detail(found))


def _render_detail(found: dict[str, Any]) -> str:
    skip = {"decision", "attempt_rows"}
    lines = [f"{name:<14} {value}" for name, value in found.items() if name not in skip and value not in ("", None)]
    decision = found["decision"]
    lines.append("decision" + ("" if decision else "      (none recorded)"))
    lines += [f"  {name:<20} {value}" for name, value in decision.items()]
    lines.append("attempts")
    for attempt in found["attempt_rows"]:
        error = f" {attempt['error_class']}" if attempt["error_class"] else ""
        lines.append(
            f"  #{attempt['attempt_index']} {attempt['deployment'] or '-'} {attempt['status']}{error} "
            f"{attempt['latency_ms']:.1f} ms, {attempt['input_tokens']} in / {attempt['output_tokens']} out, "
            f"${attempt['cost_usd']} ({attempt['price_basis']})" + (" [answered]" if attempt["is_final"] else "")
        )
    return "\n".join(lines)


@requests.command(
    "list",
    epilog=examples(
        "margin requests list                               # the 50 newest",
        "margin requests list --team search --status error --since 24h",
        "margin requests list --status refused --limit 200 --format json",
        "# the next page: the cursor the previous page printed last",
        "margin requests list --team search --cursor 1765100000.123/req_a2f2...:0",
    ),
)
@click.option("--team", default="", help="Only this team's requests.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only requests that ended so.")
@click.option("--since", default=None, help=f"Only requests from then on: {WHEN_HELP}.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="Requests per page.")
@click.option("--cursor", default=None, help="Continue after a previous page (its next_cursor).")
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True)
@CONFIG_OPTION
def list_command(
    team: str, status: str | None, since: str | None, limit: int, cursor: str | None, fmt: str,
    config_path: Path | None,
) -> None:  # fmt: skip
    """Requests newest first, one page at a time, each by how it ended."""
    params = {"team": team, "status": status or "", "since": since or "", "limit": str(limit), "cursor": cursor or ""}
    try:
        query = request_query({name: value for name, value in params.items() if value})
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    page = _run(config_path, lambda store: list_requests(store, query))
    if fmt == "json":
        echo_json(page)
        return
    click.echo("  ".join(name.upper().ljust(width) for name, width in _LIST_COLUMNS) + "  LAST_ATTEMPT_USD")
    for item in page["data"]:
        cells = "  ".join(str(item[name] or "-")[:width].ljust(width) for name, width in _LIST_COLUMNS)
        click.echo(f"{cells}  {item['last_attempt_cost_usd']}")
    if page["next_cursor"]:
        click.echo(f"next page: --cursor {page['next_cursor']}")
