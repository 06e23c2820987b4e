"""`margin serve`: run the gateway under uvicorn (uvloop + httptools)."""

from __future__ import annotations

import os

import click

from margin.cli.help import examples
from margin.cli.options import check_data_dir, data_dir_option, describe_data_dir
from margin.config.environment import CONFIG_FILE, WORKERS
from margin.config.model import MarginConfig
from margin.errors import ConfigError


@click.command(
    epilog=examples(
        "margin serve                                   # embedded default: local SmolLM2, SQLite, no keys",
        "margin serve --config margin.yaml --port 9000",
        "margin serve --config margin.yaml --data-dir /var/lib/margin --workers 4",
        "MARGIN_CONFIG=margin.yaml margin serve         # the same as --config",
    )
)
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="YAML config file.")
@data_dir_option
@click.option(
    "--host",
    default=None,
    help="Bind address (default from config: 127.0.0.1). Any other needs server.admin_key and auth: required.",
)
@click.option("--port", type=int, default=None, help="Port (default from config: 8080).")
@click.option("--workers", type=int, default=None, help="Worker processes (default from config: 1).")
@click.option("--access-log/--no-access-log", default=False, help="Log every request (costs CPU).")
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(
    config_path: str | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    access_log: bool,
    log_level: str,
) -> None:
    """Serve the OpenAI- and Anthropic-compatible API. With no --config: the embedded default."""
    from margin.factory import config_from_env
    from margin.logs import json_line, log_config
    from margin.server.exposure import exposure_problems, refusal_message
    from margin.server.guarded import GuardedHttpProtocol
    from margin.server.listeners import metrics_listener, metrics_listener_refusal, run_gateway
    from margin.storage.limits_stores import per_worker_counters

    if config_path:
        CONFIG_FILE.export(os.path.abspath(config_path))
    if workers is not None:
        WORKERS.export(str(workers))  # the workers' config says how many they are (what they share)
    try:
        config = config_from_env()  # validate before forking workers, so errors surface once
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    check_data_dir(config)
    server = config.server
    bind = host or server.host
    api_port = port if port is not None else server.port
    problems = exposure_problems(bind, config)  # before anything binds: nothing is ever exposed unprotected
    if problems:
        raise click.ClickException(refusal_message(bind, problems))
    refused = metrics_listener_refusal(config, api_port) or per_worker_counters(config)
    if refused:
        raise click.ClickException(refused)
    if log_level in ("debug", "info"):
        line = startup_line(config)
        click.echo(json_line(line.removeprefix("INFO:     ")) if config.logging.format == "json" else line, err=True)
    logging_options = {"log_config": json_logs} if (json_logs := log_config(config.logging.format, log_level)) else {}
    run_gateway(
        "margin.factory:app_from_env",
        metrics=metrics_listener(config),  # /metrics on its own socket (server.metrics_port)
        factory=True,
        host=bind,
        port=api_port,
        workers=server.workers,  # --workers, through MARGIN_WORKERS
        loop="uvloop",
        http=GuardedHttpProtocol,  # coalesced writes; header and idle timeouts, connection cap
        ws="none",  # margin serves no WebSocket: an upgrade request stays plain HTTP
        # margin resolves the client itself, trusting only server.trusted_proxies (api/client_address.py)
        proxy_headers=False,
        server_header=False,
        access_log=access_log,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        **logging_options,  # json: margin/logs.py; text: uvicorn's own
    )


def startup_line(config: MarginConfig) -> str:
    """Where the config came from and where data goes, in uvicorn's log format (printed once,
    before the workers start)."""
    source = CONFIG_FILE.read()
    origin = f"config {source}" if source else f"embedded default config ({CONFIG_FILE.name} unset, no --config)"
    return f"INFO:     margin: {origin}; data dir {describe_data_dir(config)}"
