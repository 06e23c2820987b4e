"""Shared pieces of the benchmarks: processes pinned to cores, CPU and RSS readings, percentiles."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(core: int | None, args: list[str]) -> list[str]:
    if core is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return args
    return ["taskset", "-c", str(core), *args]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children that were waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_ready(url: str, timeout: float = 60.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    raise TimeoutError(url)


@contextmanager
def process(
    args: list[str],
    ready_url: str,
    *,
    core: int | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        pinned(core, args),
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(ready_url, timeout)
        yield proc, time.perf_counter() - started
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextmanager
def fake_upstream(core: int | None = 1, *extra: str) -> Iterator[str]:
    port = free_port()
    with process(
        [sys.executable, "-m", "margin", "fake-upstream", "--port", str(port), *extra],
        f"http://127.0.0.1:{port}/v1/models",
        core=core,
    ):
        yield f"http://127.0.0.1:{port}"


def gateway_config(
    upstream: str,
    *,
    overhead_header: bool = True,
    ledger: bool = True,
    long_upstream: str | None = None,
    journal: bool = True,
    extra: str = "",
    server: str = "",
) -> str:
    long = (
        f"""  - {{name: long, provider: openai_compat, model: fake-long, base_url: "{long_upstream}/v1",
     price: {{input: "0.15", output: "0.60"}}}}
"""
        if long_upstream
        else ""
    )
    long_group = "  - {name: bench-long, deployments: [long]}\n" if long_upstream else ""
    return f"""
server: {{expose_overhead_header: {str(overhead_header).lower()}{", " + server if server else ""}}}
metering: {{enabled: {str(ledger).lower()}, journal: {str(journal).lower()}}}
{extra}
deployments:
  - name: upstream
    provider: openai_compat
    model: fake-bench
    base_url: {upstream}/v1
    price: {{input: "0.15", output: "0.60"}}
{long}models:
  - {{name: bench, deployments: [upstream]}}
{long_group}"""


@contextmanager
def gateway(config_yaml: str, core: int | None = 0, src: str | None = None) -> Iterator[tuple[str, int, float]]:
    """Yields (base URL, pid, seconds from spawn to /healthz); `src`: run margin from that source tree."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "margin.yaml"
        config.write_text(config_yaml)
        args = [
            sys.executable,
            "-m",
            "margin",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        env = {"MARGIN_DATA_DIR": tmp, **({"PYTHONPATH": src} if src else {})}
        with process(args, f"http://127.0.0.1:{port}/healthz", core=core, env=env) as (
            proc,
            ready_s,
        ):
            yield f"http://127.0.0.1:{port}", proc.pid, ready_s


@contextmanager
def bare_proxy(upstream: str, core: int | None = 0) -> Iterator[tuple[str, int]]:
    """bench/bare_proxy.py in front of `upstream`: yields (base URL, pid)."""
    port = free_port()
    script = os.path.join(os.path.dirname(__file__), "bare_proxy.py")
    args = [sys.executable, script, "--upstream", upstream, "--port", str(port)]
    with process(args, f"http://127.0.0.1:{port}/healthz", core=core) as (proc, _):
        yield f"http://127.0.0.1:{port}", proc.pid


def metric_samples(base: str, name: str) -> dict[str, float]:
    """`name`'s samples on the gateway's /metrics, keyed by the rest of the line (labels, suffix)."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(name):
            key, _, value = line.rpartition(" ")
            out[key[len(name) :]] = float(value)
    return out


@contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on loopback (no persistence), or None when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    folder = tempfile.mkdtemp(prefix="margin-bench-redis-")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder]
    server = subprocess.Popen(pinned(1, args), stdout=subprocess.DEVNULL)  # beside the load generator
    try:
        time.sleep(0.3)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def overhead_histogram(base: str) -> tuple[float, float]:
    """(sum in seconds, count) of the gateway's `margin_overhead_seconds` histogram."""
    text = httpx.get(f"{base}/metrics").text
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("margin_overhead_seconds_sum", "margin_overhead_seconds_count"):
            values[name] = float(value)
    return values["margin_overhead_seconds_sum"], values["margin_overhead_seconds_count"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
