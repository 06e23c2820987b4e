"""Start margin and the fake upstream as real processes on loopback, and stop them cleanly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextmanager
def running(
    args: list[str],
    ready_url: str,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    log: Path | None = None,
    program: list[str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run margin with `args` (by default as `python -m margin`; `program` replaces that, e.g. with
    the installed console script) until `ready_url` answers; stop it on exit."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [*(program or [sys.executable, "-m", "margin"]), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    try:
        wait_http(ready_url, timeout, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log:
            out.close()  # type: ignore[union-attr]


@contextmanager
def embedded_default(data_dir: Path) -> Iterator[str]:
    """`margin serve` with no config (the embedded default: local model and embeddings, no provider
    keys) on a free port, its data dir `data_dir` and log `data_dir/gateway.log`, until /readyz says
    ready; yields its base URL."""
    port = free_port()
    env = {"MARGIN_DATA_DIR": str(data_dir), "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}
    url = f"http://127.0.0.1:{port}"
    with running(["serve", "--port", str(port)], f"{url}/readyz", env=env, timeout=60, log=data_dir / "gateway.log"):
        yield url


@contextmanager
def fake_upstream(*extra: str) -> Iterator[str]:
    port = free_port()
    with running(["fake-upstream", "--port", str(port), *extra], f"http://127.0.0.1:{port}/v1/models"):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def gateway(
    config_yaml: str,
    tmp: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    ready_path: str = "/healthz",
) -> Iterator[str]:
    with gateway_process(config_yaml, tmp, env=env, timeout=timeout, ready_path=ready_path) as (url, _):
        yield url


@contextmanager
def gateway_process(
    config_yaml: str,
    tmp: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    ready_path: str = "/healthz",
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`gateway`, also handing out the process (tests that kill it); its data dir is `tmp/data`
    unless `env` names another MARGIN_DATA_DIR (a restart on a dead replica's data dir)."""
    port = free_port()
    config = tmp / "margin.yaml"
    config.write_text(config_yaml)
    environment = {"MARGIN_DATA_DIR": str(tmp / "data"), **(env or {})}
    with running(
        ["serve", "--config", str(config), "--port", str(port)],
        f"http://127.0.0.1:{port}{ready_path}",
        env=environment,
        timeout=timeout,
        log=tmp / "gateway.log",
    ) as process:
        yield f"http://127.0.0.1:{port}", process
