"""`margin config check FILE`, `margin config show [--defaults]` and `margin config schema`."""

from __future__ import annotations

import json
from pathlib import Path

import click
import yaml

from margin.cli.help import examples
from margin.cli.options import check_data_dir, data_dir_option, describe_data_dir
from margin.config.environment import CONFIG_FILE
from margin.errors import ConfigError


@click.group(
    epilog=examples(
        "margin config check margin.yaml",
        "margin config show                # what `margin serve` would run with here",
        "margin config show --defaults     # the built-in default",
        "margin config schema > margin.schema.json",
    )
)
def config() -> None:
    """Validate, print and describe configuration files."""


@config.command(epilog=examples("margin config check margin.yaml", "margin config check margin.yaml > resolved.yaml"))
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def check(path: str) -> None:
    """Validate PATH and print the resolved config with secrets masked."""
    from margin.config import load_config
    from margin.config.render import masked_config

    try:
        loaded = load_config(path)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(yaml.safe_dump(masked_config(loaded), sort_keys=False))
    click.echo(
        f"# {path}: valid ({len(loaded.deployments)} deployments, {len(loaded.models)} model groups)",
        err=True,
    )


@config.command(
    epilog=examples(
        "margin config show                                  # --config, else MARGIN_CONFIG, else the default",
        "margin config show --config margin.yaml --data-dir /var/lib/margin",
        "margin config show --defaults > margin.yaml         # start a config from the built-in one",
    )
)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help=f"The config file (default: {CONFIG_FILE.name}, else the embedded default).")  # fmt: skip
@click.option("--defaults", is_flag=True, help="Print the built-in default config (what serve runs with no config).")
@data_dir_option
def show(config_path: Path | None, defaults: bool) -> None:
    """Print the effective config, every setting with its value (secrets masked), and say on stderr
    where it came from and where data goes. The built-in default depends on the environment: API
    tiers appear when OPENAI_API_KEY or ANTHROPIC_API_KEY is set."""
    from margin.config import embedded_default, load_config
    from margin.config.render import masked_config

    if defaults and config_path is not None:
        raise click.UsageError("--defaults prints the built-in config: give it without --config")
    path = None if defaults else str(config_path) if config_path is not None else CONFIG_FILE.read()
    try:
        loaded = load_config(path) if path else embedded_default()
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    check_data_dir(loaded)
    click.echo(yaml.safe_dump(masked_config(loaded), sort_keys=False))
    origin = path if path else "the built-in default"
    click.echo(f"# config: {origin}; data dir: {describe_data_dir(loaded)}", err=True)


@config.command(epilog=examples("margin config schema > margin.schema.json"))
def schema() -> None:
    """Print the JSON Schema of the config file."""
    from margin.config.model import MarginConfig

    click.echo(json.dumps(MarginConfig.model_json_schema(), indent=2))
