"""Builds the app from the environment, for `margin serve` and its worker processes.

uvicorn's multi-worker mode imports an app factory by name in each worker; the config file path
travels in `MARGIN_CONFIG` (unset: the embedded default), and the number of workers `margin serve`
started in `MARGIN_WORKERS` (it decides what they share: docs/workers.md).
"""

from __future__ import annotations

from starlette.applications import Starlette

from margin.app import create_app
from margin.config import embedded_default, load_config
from margin.config.environment import CONFIG_FILE, WORKERS
from margin.config.model import MarginConfig
from margin.errors import ConfigError


def config_from_env() -> MarginConfig:
    path = CONFIG_FILE.read()
    config = load_config(path) if path else embedded_default()
    workers = WORKERS.read()
    if workers is None:
        return config
    if not workers.isdigit() or not 1 <= int(workers) <= 64:
        raise ConfigError(f"{WORKERS.name} must be a number of worker processes from 1 to 64, not {workers[:20]!r}")
    return config.model_copy(update={"server": config.server.model_copy(update={"workers": int(workers)})})


def app_from_env() -> Starlette:
    return create_app(config_from_env())
