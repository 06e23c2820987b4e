"""Shared pieces of the failover scenarios: a config builder, a gateway in front of a scripted fake
upstream, and small clients that time each call and read SSE by hand (to see [DONE] or its absence).

Every scenario owns its deployments (named after it), so circuits and the fake's call counters of one
scenario never touch another's. The fake model of deployment `x` is called `x`, so `/_fake/stats`
counts calls per deployment.

Timeouts are scaled down so the suite stays fast: connect/first-token/idle 0.5 s, a 4 s request
deadline, retries after 50-200 ms, circuits that cool down in 1 s.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.processes import fake_upstream, gateway

DEADLINE_S = 4.0
FAST = "{connect: 0.5, first_token: 0.5, idle: 0.5, total: 5}"
RETRY = "{max_retries: 1, base_delay: 0.05, max_delay: 0.2, retry_after_cap: 2}"
CIRCUIT = "{failures: 3, window: 10, cooldown: 1}"
PROMPT = "alpha beta gamma delta epsilon zeta eta theta iota kappa"  # the fake echoes it back


@dataclass
class Dep:
    extra: str = ""  # more YAML keys, e.g. "context_window: 100"
    fault: str | None = None  # the fake upstream's script for this deployment's model
    defaults: bool = False  # the documented defaults: no scaled-down timeouts, retry or circuit settings


@dataclass
class Group:
    deployments: list[str]
    fallbacks: list[str] = field(default_factory=list)
    on_error: str = ""  # YAML mapping, e.g. "{rate_limit: retry}"
    mode: str = ""  # failover_mode: retry_first | failover_first (unset: the failover section's)
    streaming: str = ""  # YAML mapping, e.g. "{buffer_first_tokens: 32}"


def config_yaml(
    upstream: str,
    deps: Mapping[str, Dep],
    groups: Mapping[str, Group],
    failover: str = "",
    deadline: float = DEADLINE_S,
) -> str:
    lines = [f"failover: {{deadline: {deadline}, retry_budget: 3{failover}}}", "deployments:"]
    for name, dep in deps.items():
        scaled = [] if dep.defaults else [f"    timeouts: {FAST}", f"    retry: {RETRY}", f"    circuit: {CIRCUIT}"]
        lines += [
            f"  - name: {name}",
            "    provider: openai_compat",
            f"    model: {name}",
            f"    base_url: {upstream}/v1",
            *scaled,
            '    price: {input: "1", output: "2"}' if "price:" not in dep.extra else "",
            *(f"    {line}" for line in dep.extra.splitlines() if line.strip()),
        ]
    lines.append("models:")
    for name, group in groups.items():
        lines.append(f"  - name: {name}")
        lines.append(f"    deployments: [{', '.join(group.deployments)}]")
        if group.fallbacks:
            lines.append(f"    fallbacks: [{', '.join(group.fallbacks)}]")
        if group.on_error:
            lines.append(f"    on_error: {group.on_error}")
        if group.mode:
            lines.append(f"    failover_mode: {group.mode}")
        if group.streaming:
            lines.append(f"    streaming: {group.streaming}")
    return "\n".join(line for line in lines if line) + "\n"


@dataclass
class Served:
    url: str
    upstream: str
    db: Path

    def calls(self) -> dict[str, int]:
        calls: dict[str, int] = httpx.get(f"{self.upstream}/_fake/stats").json()["calls"]
        return calls

    def admin(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/admin/deployments").json()
        return body

    def circuit(self, deployment: str) -> dict[str, Any]:
        for entry in self.admin()["data"]:
            if entry["name"] == deployment:
                circuit: dict[str, Any] = entry["circuit"]
                return circuit
        raise KeyError(deployment)

    def assert_healthy(self) -> None:
        """The gateway still answers at once, and holds no request open afterwards."""
        assert httpx.get(f"{self.url}/healthz").json() == {"status": "ok"}
        started = time.monotonic()
        reply = chat(self, "healthy", text="still here")
        assert reply.status == 200 and reply.text == "still here"
        assert time.monotonic() - started < 1.0
        deadline = time.monotonic() + 3
        while any(d["in_flight"] for d in self.admin()["data"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(d["in_flight"] == 0 for d in self.admin()["data"])

    def ledger(self, request_id: str, expected: int, timeout: float = 10) -> list[sqlite3.Row]:
        """The ledger rows of one request, once the background writer has written them all."""
        deadline = time.monotonic() + timeout
        while True:
            found: list[sqlite3.Row] = []
            if self.db.exists():
                with sqlite3.connect(self.db) as conn:
                    conn.row_factory = sqlite3.Row
                    for table in ("ledger_attempts", "ledger"):  # the name the ledger schema uses now / used
                        try:
                            found = conn.execute(
                                f"SELECT * FROM {table} WHERE request_id = ? ORDER BY attempt_index", (request_id,)
                            ).fetchall()
                            break
                        except sqlite3.OperationalError:
                            found = []  # not this name, or not migrated yet
            if len(found) >= expected or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


@contextmanager
def serve(
    tmp: Path, deps: Mapping[str, Dep], groups: Mapping[str, Group], failover: str = "", deadline: float = DEADLINE_S
) -> Iterator[Served]:
    deps = {**deps, "healthy": Dep()}
    groups = {**groups, "healthy": Group(["healthy"])}
    faults = [arg for name, dep in deps.items() if dep.fault for arg in ("--fault", f"{name}={dep.fault}")]
    with (
        fake_upstream(*faults) as upstream,
        gateway(config_yaml(upstream, deps, groups, failover, deadline), tmp) as url,
    ):
        yield Served(url, upstream, tmp / "data" / "margin.db")


def served_fixtures(
    name: str, deps: Mapping[str, Dep], groups: Mapping[str, Group]
) -> tuple[Callable[..., Iterator[Served]], Callable[..., Iterator[None]]]:
    """A scenario module's two fixtures: `served`, its gateway and fake upstream (one per module, in a
    temporary directory named `name`), and the autouse `healthy_afterwards`, which checks after each
    test that the gateway still answers at once and holds no request open. Use as
    `served, healthy_afterwards = served_fixtures("name", DEPS, GROUPS)`."""

    @pytest.fixture(scope="module")
    def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
        with serve(tmp_path_factory.mktemp(name), deps, groups) as running:
            yield running

    @pytest.fixture(autouse=True)
    def healthy_afterwards(served: Served) -> Iterator[None]:
        yield
        served.assert_healthy()

    return served, healthy_afterwards


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: dict[str, Any]
    elapsed: float

    @property
    def text(self) -> str:
        return str(self.body["choices"][0]["message"]["content"])

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.body["error"]
        return error


def chat(served: Served, model: str, *, text: str = PROMPT, **params: Any) -> Reply:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **params}
    started = time.monotonic()
    response = httpx.post(f"{served.url}/v1/chat/completions", json=body, timeout=DEADLINE_S + 5)
    return Reply(response.status_code, response.headers, response.json(), time.monotonic() - started)


@dataclass
class StreamReply:
    status: int
    headers: httpx.Headers
    events: list[dict[str, Any]]
    done: bool  # a `data: [DONE]` arrived
    elapsed: float

    @property
    def text(self) -> str:
        return "".join(
            c["delta"].get("content") or "" for e in self.events for c in e.get("choices") or () if "delta" in c
        )

    @property
    def finish_reasons(self) -> list[str]:
        return [c["finish_reason"] for e in self.events for c in e.get("choices") or () if c.get("finish_reason")]

    @property
    def error(self) -> dict[str, Any] | None:
        errors = [e["error"] for e in self.events if "error" in e]
        return errors[-1] if errors else None

    @property
    def models(self) -> list[str]:
        return [str(e["model"]) for e in self.events if "model" in e]


def stream(served: Served, model: str, *, text: str = PROMPT, **params: Any) -> StreamReply:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": True, **params}
    started = time.monotonic()
    events: list[dict[str, Any]] = []
    done = False
    with httpx.stream("POST", f"{served.url}/v1/chat/completions", json=body, timeout=DEADLINE_S + 5) as r:
        if r.status_code != 200:
            r.read()
            return StreamReply(r.status_code, r.headers, [r.json()], False, time.monotonic() - started)
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            assert not done, "nothing may follow [DONE]"
            if data == "[DONE]":
                done = True
            else:
                events.append(orjson.loads(data))  # every event the gateway sends is valid JSON
        return StreamReply(r.status_code, r.headers, events, done, time.monotonic() - started)


def assert_complete(reply: StreamReply, text: str = PROMPT) -> None:
    assert reply.status == 200
    assert reply.error is None, reply.error
    assert reply.text == text
    assert reply.finish_reasons == ["stop"]
    assert reply.done


def assert_clean_break(reply: StreamReply) -> None:
    """A truncated answer says so: an error event, a non-`stop` finish reason, and no [DONE]."""
    assert reply.status == 200
    assert reply.error is not None
    assert reply.finish_reasons and reply.finish_reasons[-1] != "stop"
    assert not reply.done
