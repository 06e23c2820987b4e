"""Every environment variable margin reads, declared once.

Code reads the environment only through this module: an `EnvVar` below, or `read_reference` for the
variable a config file names with `env:VAR`. docs/configuration.md lists exactly these variables,
and tests/unit/config/test_environment_registry.py fails when the code, this registry and that
table disagree.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    """One variable: its name, what happens when it is unset, and what it does."""

    name: str
    default: str
    meaning: str

    def read(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value, or None when unset or empty (an empty variable counts as unset)."""
        value = (os.environ if environ is None else environ).get(self.name)
        return value or None

    def export(self, value: str) -> None:
        """Set it for this process and the processes it starts (uvicorn's workers)."""
        os.environ[self.name] = value


DATA_DIR = EnvVar(
    "MARGIN_DATA_DIR",
    "the user data directory (`~/.local/share/margin` on Linux)",
    "Where margin keeps its state when the config sets no `data_dir`: the SQLite database, the cache, "
    "the ledger spill file and journal, the user price catalog `prices.yaml`. `--data-dir DIR` (serve, report, "
    "keys, cache ... ) sets it; `margin serve` logs the one it uses.",
)
CONFIG_FILE = EnvVar(
    "MARGIN_CONFIG",
    "the embedded default",
    "The config file `margin serve` and its worker processes load; `margin serve --config FILE` sets it.",
)
WORKERS = EnvVar(
    "MARGIN_WORKERS",
    "unset (the config's `server.workers`)",
    "How many worker processes `margin serve` started; it sets it (from `--workers`, else `server.workers`) "
    "for the workers, which share circuit state through `{data_dir}/circuits.db` when there is more than one "
    "and no `redis:` (docs/workers.md).",
)
ADMIN_KEY = EnvVar(
    "MARGIN_ADMIN_KEY",
    "none",
    "The admin key `margin models --url` sends. The gateway reads it only where the config says "
    "`server.admin_key: env:MARGIN_ADMIN_KEY`.",
)
EVAL_API_KEY = EnvVar(
    "MARGIN_API_KEY",
    "none",
    "The virtual key `margin eval run` presents to the gateway (`--api-key`).",
)
OPENAI_API_KEY = EnvVar(
    "OPENAI_API_KEY",
    "none",
    "Embedded default only: when set, adds the OpenAI deployments (gpt-4o-mini, gpt-4o, text-embedding-3-small).",
)
OPENAI_BASE_URL = EnvVar(
    "OPENAI_BASE_URL",
    "`https://api.openai.com/v1`",
    "Embedded default only: the base URL of those OpenAI deployments.",
)
ANTHROPIC_API_KEY = EnvVar(
    "ANTHROPIC_API_KEY",
    "none",
    "Embedded default only: when set, adds the Anthropic deployments (claude-haiku-4-5, claude-sonnet-4-5).",
)
ANTHROPIC_BASE_URL = EnvVar(
    "ANTHROPIC_BASE_URL",
    "`https://api.anthropic.com`",
    "Embedded default only: the base URL of those Anthropic deployments.",
)
HF_HUB_OFFLINE = EnvVar(
    "HF_HUB_OFFLINE",
    "unset (Hugging Face's own default: online)",
    "Read by Hugging Face's libraries, never by margin itself: the `margin tune` training worker and the "
    "adapter conversion set it to `1`, so no weights or configs are downloaded at run time.",
)

REGISTRY: tuple[EnvVar, ...] = (
    DATA_DIR,
    CONFIG_FILE,
    WORKERS,
    ADMIN_KEY,
    EVAL_API_KEY,
    OPENAI_API_KEY,
    OPENAI_BASE_URL,
    ANTHROPIC_API_KEY,
    ANTHROPIC_BASE_URL,
    HF_HUB_OFFLINE,
)


def read_reference(name: str) -> str | None:
    """The variable a config value names as `env:NAME` (an API key, a Redis URL): its name is the
    user's choice, so it cannot be declared here. None when unset."""
    return os.environ.get(name)


def markdown_table() -> str:
    """The table docs/configuration.md carries between its env-table markers (a test compares them)."""
    lines = ["| variable | unset | what it does |", "| --- | --- | --- |"]
    lines += [f"| `{var.name}` | {var.default} | {var.meaning} |" for var in REGISTRY]
    return "\n".join(lines)
