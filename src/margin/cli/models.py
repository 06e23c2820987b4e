"""`margin models`: deployments, the model groups they serve, and whether they answer.

With `--url` it asks a running gateway instead (`GET /admin/deployments`) and shows each
deployment's circuit as that gateway sees it: closed, open (and when it will be probed) or half-open.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

import click

from margin.cli.help import examples
from margin.config.environment import ADMIN_KEY
from margin.errors import ConfigError


@click.command(
    epilog=examples(
        "margin models                                       # the embedded default's deployments",
        "margin models --config margin.yaml --no-health",
        "margin models --url http://127.0.0.1:8080           # a running gateway's circuits (MARGIN_ADMIN_KEY)",
    )
)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--no-health", is_flag=True, help="Do not probe the upstreams.")
@click.option("--url", default=None, help="A running gateway to ask, e.g. http://127.0.0.1:8080 (shows circuits).")
@click.option("--admin-key", envvar=ADMIN_KEY.name, default=None, help=f"Admin key for --url (env {ADMIN_KEY.name}).")
def models(config_path: str | None, no_health: bool, url: str | None, admin_key: str | None) -> None:
    """List deployments and their health (or, with --url, a running gateway's circuit states)."""
    if url:
        _echo_rows(_live_rows(url, admin_key))
        return
    from margin.config import embedded_default, load_config
    from margin.providers.registry import build_provider

    try:
        config = load_config(config_path) if config_path else embedded_default()
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    groups: dict[str, list[str]] = {}
    for group in config.models:
        for name in group.deployments:
            groups.setdefault(name, []).append(group.name)

    async def probe() -> dict[str, str]:
        result = {}
        for deployment in config.deployments:
            if no_health:
                result[deployment.name] = "-"
                continue
            try:
                provider = build_provider(deployment)
                healthy = await asyncio.wait_for(provider.health(), 5)
                await provider.aclose()
                result[deployment.name] = "healthy" if healthy else "unreachable"
            except (ConfigError, TimeoutError) as exc:
                result[deployment.name] = f"unavailable ({exc})"
        return result

    health = asyncio.run(probe())
    rows: list[tuple[str, ...]] = [("DEPLOYMENT", "PROVIDER", "MODEL", "COST-RANK", "GROUPS", "HEALTH")]
    for d in config.deployments:
        rows.append((d.name, d.provider, d.model, str(d.cost_rank), ",".join(groups.get(d.name, [])), health[d.name]))
    _echo_rows(rows)


def _live_rows(url: str, admin_key: str | None) -> list[tuple[str, ...]]:
    request = urllib.request.Request(url.rstrip("/") + "/admin/deployments")
    if admin_key:
        request.add_header("authorization", f"Bearer {admin_key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise click.ClickException(f"{url} answered {exc.code}: {exc.read()[:300].decode(errors='replace')}") from None
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        raise click.ClickException(f"could not read {url}/admin/deployments: {exc}") from None
    rows: list[tuple[str, ...]] = [("DEPLOYMENT", "PROVIDER", "MODEL", "COST-RANK", "GROUPS", "IN-FLIGHT", "CIRCUIT")]
    for d in body.get("data", []):
        rows.append(
            (
                d["name"],
                d["provider"],
                d["model"],
                str(d.get("cost_rank", d.get("tier"))),  # a gateway before 0.2 says "tier"
                ",".join(d.get("groups", [])),
                str(d.get("in_flight", 0)),
                circuit_text(d.get("circuit") or {}),
            )
        )
    return rows


def circuit_text(circuit: dict[str, Any]) -> str:
    """`closed`, `closed (2 failures)`, `open, probe in 4.2s (server_error)`, `half_open`."""
    state = str(circuit.get("state", "?"))
    if state == "closed":
        failures = circuit.get("failures") or 0
        return f"closed ({failures} failures)" if failures else "closed"
    text = state
    if state == "open" and circuit.get("probe_in_s") is not None:
        text += f", probe in {circuit['probe_in_s']:.1f}s"
    if circuit.get("last_error"):
        text += f" ({circuit['last_error']})"
    return text


def _echo_rows(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
