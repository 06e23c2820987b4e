"""Reloading the config file's teams, budgets and rate limits into a running replica: on SIGHUP, or
`POST /admin/reload` (what `margin reload` asks). The file is read and validated whole first: a file
with a mistake changes nothing (the error names file and line) and the replica keeps its rules.
Only `teams:`, `budgets:` and `rate_limits:` apply live; the answer names any other section that
changed, which needs a restart."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from margin.budgets.live import LiveObjects
from margin.budgets.object_service import ObjectService
from margin.budgets.objects import change_view, config_changes, config_objects
from margin.config.environment import CONFIG_FILE
from margin.config.loader import load_config
from margin.config.model import MarginConfig
from margin.errors import ConfigError, Conflict, Unprocessable
from margin.storage.protocols import StorageError
from margin.storage.teams import Change

log = logging.getLogger("margin.limits")
LIVE_SECTIONS = frozenset({"teams", "budgets", "rate_limits"})


@dataclass(frozen=True, slots=True)
class Reloaded:
    path: str
    changes: list[Change] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)  # other top-level sections that changed
    audited: bool = True  # False: the audit rows could not be written (the change applied all the same)

    def view(self) -> dict[str, Any]:
        return {
            "object": "reload",
            "config": self.path,
            "changes": [change_view(c) for c in self.changes],
            "restart_needed": self.restart_needed,
            "audited": self.audited,
        }


def read_config_file() -> tuple[str, MarginConfig]:
    """The file this replica was started with, read and validated again."""
    path = CONFIG_FILE.read()
    if not path:
        raise Conflict("This gateway runs on the embedded default config: there is no file to reload.")
    try:
        return path, load_config(path)
    except ConfigError as exc:
        raise Unprocessable(f"The config file was not reloaded (nothing changed): {exc.message}") from None
    except OSError as exc:
        raise Unprocessable(f"The config file was not reloaded (nothing changed): {exc}") from None


async def reload_objects(
    live: LiveObjects, service: ObjectService, running: MarginConfig, path: str, new: MarginConfig
) -> Reloaded:
    """Apply `new`'s teams, budgets and rate limits on this replica and audit what changed."""
    declared = config_objects(new.teams, new.budgets, new.rate_limits)
    old = live.config
    try:
        await live.replace_config(declared)
    except ValueError as exc:
        raise Unprocessable(f"The config file was not reloaded (nothing changed): {exc}") from None
    restart = [
        name
        for name in type(running).model_fields
        if name not in LIVE_SECTIONS and getattr(running, name) != getattr(new, name)
    ]
    changes = config_changes(old, declared, service.clock())
    audited = True
    try:
        for change in changes:
            await service.store.record(change)
    except StorageError as exc:
        log.error("config reloaded but its audit rows were not all written: %s", exc)
        audited = False
    for change in changes:
        log.info("config reload: %s %s %s", change.action, change.kind, change.object_id)
    if restart:
        log.warning("config reload: %s changed and apply only after a restart", ", ".join(restart))
    return Reloaded(path, changes, restart, audited)
