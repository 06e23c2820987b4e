"""The sockets `margin serve` listens on: the API port, and optionally a metrics listener.

With `server.metrics_port` set, /metrics moves off the API port onto its own socket, bound to
`server.metrics_host` (loopback by default): Prometheus scrapes an internal address and the API
port, the one clients and proxies reach, has no /metrics at all. The same app serves both sockets
(one process, one metrics registry per worker); `margin.api.access` tells them apart by the local
port a request came in on and answers only /metrics and /healthz on the metrics listener.
"""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from margin.config.model import MarginConfig
from margin.server.exposure import binds_loopback_only

log = logging.getLogger("margin.server")
STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start


@dataclass(frozen=True, slots=True)
class MetricsListener:
    host: str
    port: int


def metrics_listener(config: MarginConfig) -> MetricsListener | None:
    port = config.server.metrics_port
    return None if port is None else MetricsListener(config.server.metrics_host, port)


def metrics_listener_refusal(config: MarginConfig, api_port: int) -> str | None:
    """Why the metrics listener may not start as configured; None when it may (or there is none)."""
    listener = metrics_listener(config)
    if listener is None:
        return None
    if listener.port == api_port:
        return f"`server.metrics_port` ({listener.port}) is the API port: give the metrics listener a port of its own"
    if not binds_loopback_only(listener.host) and config.server.metrics_token is None:
        return (
            f"refusing to serve /metrics on {listener.host}: it is reachable from other machines and "
            "/metrics labels spend by team. Set `server.metrics_token: env:VAR` (Prometheus sends it as its "
            "`authorization` credentials), or keep `server.metrics_host: 127.0.0.1`."
        )
    return None


def run_gateway(app: str, *, metrics: MetricsListener | None, **options: Any) -> None:
    """`uvicorn.run(app, **options)`, plus the metrics listener's socket when there is one."""
    if metrics is None:
        uvicorn.run(app, **options)
        return
    config = uvicorn.Config(app, **options)
    server = uvicorn.Server(config)
    sockets = [config.bind_socket(), _bind(metrics)]
    log.info("metrics on http://%s:%d/metrics", metrics.host, metrics.port)
    try:
        if config.workers > 1:
            Multiprocess(config, sockets=sockets).run()
        else:
            server.run(sockets=sockets)
    except KeyboardInterrupt:
        pass
    if config.workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)


def _bind(listener: MetricsListener) -> socket.socket:
    family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((listener.host.strip("[]"), listener.port))
    except OSError as exc:
        sock.close()
        log.error("cannot bind the metrics listener to %s:%d: %s", listener.host, listener.port, exc)
        sys.exit(STARTUP_FAILURE)
    sock.set_inheritable(True)  # worker processes serve it too
    return sock
