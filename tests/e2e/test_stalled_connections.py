"""Connections that never finish their headers (issue 16, item 3), against `margin serve`.

Reproduction: 500 connections that sent part of a request's headers and stalled were all still
open 30 s later, each holding a file descriptor of the gateway (25 -> 525 open). Here 200 such
sockets must be closed by the gateway within `server.header_timeout_s` (plus slack) while normal
requests are answered meanwhile, the process's descriptors return to where they were, and past
`server.max_connections` a new connection gets a clear 503 that /metrics counts.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai

from tests.support.processes import gateway_process

ADMIN = "stalled-connections-admin"
HEADER_TIMEOUT_S = 4.0  # long enough for the normal requests on a loaded machine
STALLED = 200
CONFIG = """
deployments:
  - {{name: up, provider: fake, model: fake, price: {{input: "1", output: "1"}}}}
models:
  - {{name: chat, deployments: [up]}}
cache: {{enabled: false}}
server: {{admin_key: env:MARGIN_ADMIN_KEY, header_timeout_s: {timeout}, max_connections: {cap}}}
"""


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@contextmanager
def stalled_sockets(url: str, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that each send half a request's headers, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection((host, int(port)), timeout=5)
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: margin\r\nContent-Type: app")
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """Whether the server ends the connection before `deadline` (a 408 first is fine)."""
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            if sock.recv(65536) == b"":
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {ADMIN}"}, timeout=10).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def chat(url: str) -> str:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=10)
    answer = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "still there?"}])
    return answer.choices[0].message.content or ""


def test_stalled_connections_are_closed_in_time_and_others_are_served(tmp_path: Path) -> None:
    config = CONFIG.format(timeout=HEADER_TIMEOUT_S, cap=1000)
    with gateway_process(config, tmp_path, env={"MARGIN_ADMIN_KEY": ADMIN}) as (url, process):
        chat(url)  # warm: the fake deployment, the ledger writer
        baseline = open_fds(process.pid)
        with stalled_sockets(url, STALLED) as sockets:
            opened = time.monotonic()
            time.sleep(0.3)
            assert open_fds(process.pid) >= baseline + STALLED * 0.9  # each one held a descriptor...
            for _ in range(3):  # ...while normal requests are answered
                assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
                assert chat(url)
            assert time.monotonic() - opened < HEADER_TIMEOUT_S  # answered before any stalled one was let go
            deadline = opened + HEADER_TIMEOUT_S + 4.0
            still_open = [sock for sock in sockets if not closed_by_server(sock, deadline)]
            assert still_open == [], f"{len(still_open)} stalled connections still open after {HEADER_TIMEOUT_S}s"
        time.sleep(0.3)
        assert open_fds(process.pid) <= baseline + 5  # ...and gave it back
        assert metric(url, 'margin_connections_closed_by_timeout_total{reason="header"}') >= STALLED


def test_past_the_connection_cap_a_new_connection_gets_a_counted_503(tmp_path: Path) -> None:
    cap = 50
    config = CONFIG.format(timeout=3.0, cap=cap)
    with gateway_process(config, tmp_path, env={"MARGIN_ADMIN_KEY": ADMIN}) as (url, _):
        with stalled_sockets(url, cap):
            time.sleep(0.3)  # the gateway has accepted them all
            refused = httpx.get(f"{url}/healthz", timeout=5)
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "too_many_connections"
            assert "server.max_connections" in refused.json()["error"]["message"]
        time.sleep(0.5)  # the stalled ones closed by their client: room again
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert metric(url, "margin_connections_rejected_total") == 1
        assert metric(url, "margin_connections_max") == cap
