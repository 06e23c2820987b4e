"""Refuse to serve the network unprotected.

On loopback (the default) only this machine can connect, and the admin API without an admin key
answers only local callers. Bound to any other address, margin would hand its admin API (keys,
budgets) and its upstream credits to whoever can reach the port, so `margin serve` checks before it
binds anything: an admin key is required, and so are client keys unless the operator said
otherwise in so many words (`server.allow_unauthenticated: true`).
"""

from __future__ import annotations

from margin.api.client_address import is_loopback
from margin.config.model import MarginConfig


def binds_loopback_only(host: str) -> bool:
    """Whether binding `host` keeps margin on this machine. A name other than `localhost` might
    resolve to anything, so it counts as exposed."""
    return host.strip().lower() == "localhost" or is_loopback(host.strip().strip("[]"))


def exposure_problems(host: str, config: MarginConfig) -> list[str]:
    """What must be set before margin may listen on `host`; empty when nothing is missing."""
    if binds_loopback_only(host):
        return []
    server, problems = config.server, []
    if server.admin_key is None:
        problems.append(
            "no admin key: set `server.admin_key: env:MARGIN_ADMIN_KEY` (and export MARGIN_ADMIN_KEY) "
            "so that /admin/* needs it"
        )
    elif not server.admin_key.resolve():
        problems.append(f"`server.admin_key` is {server.admin_key.masked()}, which is unset or empty: export it")
    if config.auth != "required" and not server.allow_unauthenticated:
        problems.append(
            "client keys are not required: set `auth: required` (create keys with `margin keys create` or "
            "POST /admin/keys), or `server.allow_unauthenticated: true` to serve without keys on purpose"
        )
    return problems


def refusal_message(host: str, problems: list[str]) -> str:
    lines = [f"refusing to serve on {host}: it is reachable from other machines, and"]
    lines += [f"  - {problem}" for problem in problems]
    lines.append(
        "Or keep the default host 127.0.0.1 and put a reverse proxy in front (docs/security.md, "
        "'Deploying behind a reverse proxy')."
    )
    return "\n".join(lines)
