"""`margin serve --workers 2` on the embedded default's stores (SQLite, no Redis): two real worker
processes behind one port share the budget, the rate limit and the ledger (docs/workers.md).

Prices make each request's worst case $0.05 and its actual cost $0.03 (as in limits_cluster.py):
prompt "hi" = 7 tokens, max_tokens 43, the fake answers 23 one-letter words, all at $1000/M. With
a $0.50 budget at most 16 requests can be answered, whichever worker takes them; with a counter per
worker the two would answer up to 32 between them.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.request import urlopen

from tests.support.processes import fake_upstream, gateway_process

ANSWER = " ".join(["w"] * 23)
REQUEST = {"model": "metered", "max_tokens": 43, "messages": [{"role": "user", "content": "hi"}]}
HEADERS = {"content-type": "application/json"}


def config(upstream: str, limits: str, *, failover: bool = False) -> str:
    """`failover`: a model whose first deployment, `down`, opens its circuit after 2 failures."""
    down = (
        f"""  - {{name: down, provider: openai_compat, model: fake-down, base_url: "{upstream}/v1",
     price: {{input: "1", output: "1"}}, retry: {{max_retries: 0}}, circuit: {{failures: 2, window: 60, cooldown: 60}}}}
"""
        if failover
        else ""
    )
    group = "  - {name: failover, deployments: [down, fake-metered]}\n" if failover else ""
    return f"""
deployments:
  - {{name: fake-metered, provider: openai_compat, model: fake-metered, base_url: "{upstream}/v1",
     price: {{input: "1000", output: "1000"}}}}
{down}models:
  - {{name: metered, deployments: [fake-metered]}}
{group}cache: {{enabled: false}}
server: {{workers: 2}}
{limits}"""


def workers_of(pid: int) -> list[int]:
    """uvicorn's worker processes (multiprocessing's spawned children; not its resource tracker)."""
    children = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [child for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def journal_writers(tmp_path: Path) -> set[str]:
    """The processes whose replica journal holds lines: each worker journals the requests it takes
    (`{data_dir}/journal/<owner>.<seq>.jsonl`, docs/ledger.md)."""
    segments = (tmp_path / "data" / "journal").glob("*.jsonl")
    return {path.name.split(".", 1)[0] for path in segments if path.stat().st_size > 0}


@contextmanager
def two_workers(
    tmp_path: Path, limits: str, *faults: str, failover: bool = False
) -> Iterator[tuple[list[HTTPConnection], str]]:
    """The gateway, keep-alive connections to it (half of them accepted by each worker), and the
    fake upstream's URL."""
    with (
        fake_upstream("--content", ANSWER, *faults) as upstream,
        gateway_process(config(upstream, limits, failover=failover), tmp_path) as (url, process),
    ):
        workers = workers_of(process.pid)
        assert len(workers) == 2, workers  # server.workers: 2, without --workers
        connections = pinned(int(url.rsplit(":", 1)[1]), workers, each=8)
        try:
            yield connections, upstream
        finally:
            for connection in connections:
                connection.close()


def _server_socket(port: int, peer: int) -> str:
    """`socket:[inode]` of the server's end of the connection from local port `peer`."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)
            if (local, remote) == (port, peer):
                return f"socket:[{fields[9]}]"
    raise AssertionError(f"no server socket for a connection from port {peer}")


def _worker_of(socket: str, workers: list[int]) -> int:
    for pid in workers:
        if any(os.readlink(fd) == socket for fd in Path(f"/proc/{pid}/fd").iterdir() if fd.is_symlink()):
            return pid
    raise AssertionError(f"{socket} belongs to no worker")


def pinned(port: int, workers: list[int], each: int) -> list[HTTPConnection]:
    """Open connections until each worker has accepted `each` (which worker accepts a new connection
    is the kernel's choice), found through /proc; interleaved: worker A's, worker B's, A's ..."""
    groups: dict[int, list[HTTPConnection]] = {pid: [] for pid in workers}
    for _ in range(400):
        if all(len(group) >= each for group in groups.values()):
            break
        connection = HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/healthz")  # answered: the connection has been accepted
        connection.getresponse().read()
        assert connection.sock is not None
        group = groups[_worker_of(_server_socket(port, connection.sock.getsockname()[1]), workers)]
        if len(group) < each:
            group.append(connection)
        else:
            connection.close()
    assert all(len(group) == each for group in groups.values()), {pid: len(g) for pid, g in groups.items()}
    return [c for pair in zip(*groups.values(), strict=True) for c in pair]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


def post(connection: HTTPConnection) -> Answer:
    connection.request("POST", "/v1/chat/completions", body=json.dumps(REQUEST), headers=HEADERS)
    response = connection.getresponse()
    body = json.loads(response.read())
    return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def burst(connections: list[HTTPConnection]) -> list[Answer]:
    """One request on every connection at once (both workers busy together)."""
    with ThreadPoolExecutor(len(connections)) as pool:
        return list(pool.map(post, connections))


def held(tmp_path: Path) -> int:
    """Nano-dollars the budget holds for requests not settled yet (settling runs beside the response)."""
    with closing(sqlite3.connect(tmp_path / "data" / "margin.db")) as conn:
        (value,) = conn.execute(
            "SELECT COALESCE(SUM(value), 0) FROM margin_counters WHERE name LIKE '%#hold'"
        ).fetchone()
    return int(value)


def settled(tmp_path: Path, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while held(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not held(tmp_path), "a reservation was never settled"


def ledger(tmp_path: Path) -> list[tuple[str, str, str]]:
    """(request_id, status, cost_total) of every ledger row, read after the gateway stopped (drained)."""
    with closing(sqlite3.connect(tmp_path / "data" / "margin.db")) as conn:
        rows = conn.execute("SELECT request_id, status, cost_total FROM ledger_attempts").fetchall()
    return [(str(r), str(s), str(c)) for r, s, c in rows]


def test_a_budget_stops_at_its_limit_across_both_workers(tmp_path: Path) -> None:
    budget = "budgets:\n  - {scope: global, limit_usd: 0.5, window: month}\n"
    with two_workers(tmp_path, budget) as (connections, _):
        answers = burst(connections)  # 16 at once, 8 per worker: the holds refuse some
        assert any(a.status == 402 for a in answers)
        for connection in connections:  # then one at a time, each after the last settled, both workers
            settled(tmp_path)
            answers.append(post(connection))
        settled(tmp_path)
        writers = journal_writers(tmp_path)
    answered = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status == 402]
    assert len(answered) + len(refused) == len(answers), {a.status for a in answers}
    assert len(writers) == 2, writers  # both workers journalled requests
    assert all(a.body["error"]["code"] == "budget_exceeded" for a in refused)
    assert all(Decimal(a.headers["x-margin-cost-usd"]) == Decimal("0.03") for a in answered)
    spent = sum(Decimal(a.headers["x-margin-cost-usd"]) for a in answered)
    assert len(answered) == 16 and spent == Decimal("0.48"), spent  # $0.48 + a $0.05 worst case > $0.50
    rows = ledger(tmp_path)  # every request has its row, from whichever worker answered it
    ok = {rid: cost for rid, status, cost in rows if status == "ok"}
    assert set(ok) == {a.headers["x-request-id"] for a in answered}
    assert sum(Decimal(c) for c in ok.values()) == spent
    assert {rid for rid, status, _ in rows if status == "refused"} == {a.headers["x-request-id"] for a in refused}


def test_a_rate_limit_is_one_limit_for_both_workers(tmp_path: Path) -> None:
    with two_workers(tmp_path, "rate_limits:\n  - {scope: global, requests_per_minute: 20}\n") as (connections, _):
        answers = burst(connections) + burst(connections)  # 32 requests, 16 per worker, within a minute
    statuses = sorted(a.status for a in answers)
    assert statuses.count(200) == 20 and statuses.count(429) == 12, statuses
    assert len(ledger(tmp_path)) == 32  # 20 answered, 12 refused: one row each


def test_counters_in_each_workers_memory_are_refused_before_serving(tmp_path: Path) -> None:
    path = tmp_path / "margin.yaml"
    path.write_text(config("http://127.0.0.1:9/v1", "limits: {counters: memory}\n"))
    done = subprocess.run(
        [sys.executable, "-m", "margin", "serve", "--config", str(path), "--workers", "3", "--port", "9"],
        env={**os.environ, "MARGIN_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "server.workers is 3" in done.stderr and "each worker's memory" in done.stderr, done.stderr


def test_a_circuit_opened_by_failures_on_both_workers_is_open_for_both(tmp_path: Path) -> None:
    """`down` answers 503 every time and opens after 2 failures: one seen by each worker, they add up
    (circuits in {data_dir}/circuits.db), so the upstream sees 2 calls in all, not 2 per worker."""
    body = json.dumps(dict(REQUEST, model="failover"))
    with two_workers(tmp_path, "", "--fault", "fake-down=status=503", failover=True) as (connections, upstream):
        answers = []
        for connection in connections[:8]:  # worker A, B, A, B ...
            connection.request("POST", "/v1/chat/completions", body=body, headers=HEADERS)
            response = connection.getresponse()
            answers.append((response.status, response.getheader("x-margin-deployment")))
            response.read()
            time.sleep(0.3)  # past failover.shared_circuit_fresh_ms, how long a closed verdict is reused
        calls = json.loads(urlopen(f"{upstream}/_fake/stats").read())["calls"]
    assert all(status == 200 for status, _ in answers), answers  # the fallback answered every one
    assert calls.get("fake-down") == 2, calls  # a circuit per worker would let 4 through
    assert [deployment for _, deployment in answers[2:]] == ["fake-metered"] * 6
