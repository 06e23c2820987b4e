"""Builds the app from the environment, for `margin serve` and its worker processes.

uvicorn's multi-worker mode imports an app factory by name in each worker; the config file path
travels in `MARGIN_CONFIG` (unset: the embedded default).
"""

from __future__ import annotations

from starlette.applications import Starlette

from margin.app import create_app
from margin.config import embedded_default, load_config
from margin.config.environment import CONFIG_FILE
from margin.config.model import MarginConfig


def config_from_env() -> MarginConfig:
    path = CONFIG_FILE.read()
    return load_config(path) if path else embedded_default()


def app_from_env() -> Starlette:
    return create_app(config_from_env())
