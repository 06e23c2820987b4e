"""The documented failover defaults, end to end: deployments configured with no timeouts, retry or
circuit settings at all (only `failover.deadline`, long enough never to explain a fast answer).

- retry_first: a 429 with `Retry-After: 2`, or a single 500, is retried on the primary, not sent to
  the fallback; a Retry-After over `retry_after_cap` (10 s) fails over at once; a latency-critical
  group set to `failover_first` moves on at once;
- stream timeouts from measured latency: a fast deployment whose first token (or next token) stalls
  is abandoned within a few seconds, not after the 30 s defaults.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.failover_env import PROMPT, Dep, Group, Served, assert_complete, chat, serve, stream

PREFILL = "capabilities: {prefill: true}"
WARM_UP = 25  # streams before the fault: more than adaptive_timeouts.min_samples (20)

DEPS = {
    "ra2-p": Dep(fault="status=429,retry_after=2,times=1", defaults=True),
    "ra2-b": Dep(defaults=True),
    "once-p": Dep(fault="status=500,times=1", defaults=True),
    "once-b": Dep(defaults=True),
    "ra30-p": Dep(fault="status=429,retry_after=30", defaults=True),
    "ra30-b": Dep(defaults=True),
    "crit-p": Dep(fault="status=429,retry_after=2,times=1", defaults=True),
    "crit-b": Dep(defaults=True),
    "ttft-p": Dep(defaults=True),
    "ttft-b": Dep(defaults=True),
    "gap-p": Dep(defaults=True),
    "gap-b": Dep(PREFILL, defaults=True),
}
GROUPS = {
    "ra2": Group(["ra2-p", "ra2-b"]),
    "once": Group(["once-p", "once-b"]),
    "ra30": Group(["ra30-p", "ra30-b"]),
    "crit": Group(["crit-p", "crit-b"], mode="failover_first"),
    "ttft": Group(["ttft-p", "ttft-b"]),
    "gap": Group(["gap-p", "gap-b"]),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("failover-defaults"), DEPS, GROUPS, deadline=60) as s:
        yield s


def set_fault(served: Served, model: str, spec: str) -> None:
    httpx.post(f"{served.upstream}/_fake/faults", json={model: spec}).raise_for_status()


def timeouts(served: Served, deployment: str) -> dict[str, float]:
    for entry in served.admin()["data"]:
        if entry["name"] == deployment:
            found: dict[str, float] = entry["timeouts"]
            return found
    raise KeyError(deployment)


def test_429_with_retry_after_2_is_waited_for_on_the_primary(served: Served) -> None:
    reply = chat(served, "ra2")
    assert reply.status == 200 and reply.text == PROMPT
    assert reply.headers["x-margin-deployment"] == "ra2-p" and "x-margin-fallback" not in reply.headers
    assert 2.0 <= reply.elapsed < 4.0  # Retry-After consulted
    assert served.calls().get("ra2-p") == 2 and "ra2-b" not in served.calls()


def test_a_single_500_is_retried_on_the_primary(served: Served) -> None:
    reply = chat(served, "once")
    assert reply.status == 200 and reply.text == PROMPT
    assert reply.headers["x-margin-deployment"] == "once-p" and reply.headers["x-margin-attempts"] == "2"
    assert reply.elapsed < 1.0  # jittered back-off from 0.2 s
    assert served.calls().get("once-p") == 2 and "once-b" not in served.calls()


def test_retry_after_over_the_cap_fails_over_at_once(served: Served) -> None:
    reply = chat(served, "ra30")
    assert reply.status == 200 and reply.headers["x-margin-deployment"] == "ra30-b"
    assert reply.headers["x-margin-fallback-reason"] == "rate_limit"
    assert reply.elapsed < 1.0
    assert served.calls().get("ra30-p") == 1


def test_a_failover_first_group_moves_on_at_once(served: Served) -> None:
    reply = chat(served, "crit")
    assert reply.status == 200 and reply.headers["x-margin-deployment"] == "crit-b"
    assert reply.elapsed < 1.0
    assert served.calls().get("crit-p") == 1


def test_a_fast_deployment_whose_first_token_stalls_fails_over_in_seconds_not_30(served: Served) -> None:
    assert timeouts(served, "ttft-p")["first_token_timeout_s"] == 30.0  # nothing measured yet
    for _ in range(WARM_UP):
        assert_complete(stream(served, "ttft"))
    measured = timeouts(served, "ttft-p")
    assert measured["first_token_samples"] == WARM_UP
    assert measured["first_token_timeout_s"] == 3.0  # 3 x a few ms is under the 3 s floor
    set_fault(served, "ttft-p", "first_token=60")  # headers at once, then silence
    try:
        answer = stream(served, "ttft")
    finally:
        set_fault(served, "ttft-p", "")
    assert_complete(answer)
    assert answer.headers["x-margin-deployment"] == "ttft-b"
    assert answer.headers["x-margin-fallback-reason"] == "timeout"
    assert 3.0 <= answer.elapsed < 5.0  # well before the 30 s default
    assert served.calls()["ttft-p"] == WARM_UP + 1  # a silent upstream is not asked again
    served.assert_healthy()


def test_a_fast_stream_that_stalls_midway_is_continued_in_seconds_not_30(served: Served) -> None:
    for _ in range(WARM_UP):
        assert_complete(stream(served, "gap"))
    assert timeouts(served, "gap-p")["idle_timeout_s"] == 5.0  # the idle floor
    set_fault(served, "gap-p", "stall_after=3,stall=60")
    started = time.monotonic()
    try:
        answer = stream(served, "gap")
    finally:
        set_fault(served, "gap-p", "")
    assert_complete(answer)  # the whole answer: continued on the prefill-capable fallback
    assert answer.models[0] == "gap-p" and answer.models[-1] == "gap-b"
    assert 5.0 <= time.monotonic() - started < 7.5
    served.assert_healthy()
