"""Options several commands share: `--config` and `--data-dir`, the config they name, and the check
that the two agree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from margin.config import load_config
from margin.config.defaults import data_dir_and_source
from margin.config.environment import DATA_DIR
from margin.config.model import MarginConfig
from margin.errors import ConfigError

F = TypeVar("F", bound=Callable[..., object])
_META_KEY = "margin.data_dir"


def _export_data_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """`--data-dir DIR` is MARGIN_DATA_DIR=DIR for this command and the processes it starts."""
    if value is None:
        return
    path = value.expanduser().resolve()
    DATA_DIR.export(str(path))
    ctx.meta[_META_KEY] = path


def data_dir_option(command: F) -> F:
    option = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        callback=_export_data_dir,
        expose_value=False,
        is_eager=True,  # set before any other option's callback or default reads the data dir
        help=f"Where margin keeps its state (database, cache, journal, prices.yaml): sets {DATA_DIR.name}. "
        "A config file's data_dir must agree.",
    )
    return option(command)


def config_option(help: str) -> Callable[[F], F]:
    """`--config FILE` (`help`: what the file names for these commands) and `--data-dir DIR`."""
    option = click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help=help,
    )

    def decorate(command: F) -> F:
        return data_dir_option(option(command))

    return decorate


def load_margin_config(config_path: Path | None, *, default: Callable[[], MarginConfig] = MarginConfig) -> MarginConfig:
    """The config `--config` names (`default()` without one), a bad one a click error; `--data-dir` checked
    against it."""
    try:
        config = load_config(config_path) if config_path is not None else default()
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    check_data_dir(config)
    return config


def check_data_dir(config: MarginConfig) -> None:
    """Refuse a `--data-dir` that a config's `data_dir` contradicts (the config would win silently)."""
    ctx = click.get_current_context(silent=True)
    given = ctx.meta.get(_META_KEY) if ctx is not None else None
    if given is None or not config.data_dir:
        return
    configured = Path(config.data_dir).expanduser().resolve()
    if configured != given:
        raise click.UsageError(f"--data-dir {given} contradicts the config's data_dir: {configured}; drop one of them")


def describe_data_dir(config: MarginConfig) -> str:
    path, source = data_dir_and_source(config)
    if source == DATA_DIR.name and click.get_current_context(silent=True) is not None:
        ctx = click.get_current_context()
        source = "--data-dir" if ctx.meta.get(_META_KEY) is not None else source
    return f"{path} (from {source})"
