"""/metrics carries what an operator alerts on: circuit state and calls in flight per deployment,
team budgets, errors named in the documented vocabulary, and no `*_created` series."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from limits_support import ADMIN, serve
from prometheus_client.parser import text_string_to_metric_families

from margin.pipeline.error_labels import ErrorLabels
from margin.pipeline.operator_gauges import OperatorGauges
from margin.resilience.circuit import CircuitView
from margin.storage.protocols import StorageError

AUTH = {"authorization": f"Bearer {ADMIN}"}
TEAM_BUDGETS = """
budgets:
  - {scope: 'team:*', limit_usd: 2, window: day}
  - {scope: 'team:research', limit_tokens: 1000, window: month}
rate_limits:
  - {scope: 'team:search', requests_per_minute: 1}
"""


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def test_the_error_vocabulary_is_the_failover_classes_then_the_client_codes() -> None:
    label = ErrorLabels()
    assert label("UpstreamRateLimit") == "rate_limit" and label("UpstreamTimeout") == "timeout"
    assert label("MalformedUpstreamEvent") == "stream_interrupted"  # a subclass takes its parent's class
    assert label("RateLimited") == "rate_limit_exceeded" and label("BudgetExceeded") == "budget_exceeded"
    assert label("BudgetRefusal") == "budget_exceeded" and label("BudgetExceededAsRateLimit") == "budget_exceeded"
    assert label("AuthError") == "invalid_api_key" and label("ModelNotFound") == "model_not_found"
    assert label("ValueError") == "internal"


async def test_metrics_show_circuits_in_flight_budgets_and_named_errors(tmp_path: Path) -> None:
    async with serve(tmp_path, TEAM_BUDGETS) as gw:
        search, _ = await gw.create_key(team="search")
        await gw.create_key(team="research")
        teamless, _ = await gw.create_key()  # team "default"
        assert (await gw.chat(search, model="cheap", max_tokens=5)).status_code == 200
        refused = await gw.chat(search, model="cheap", max_tokens=5)  # one request per minute
        assert refused.status_code == 429
        await gw.settled()
        caller = gw.pipeline.caller
        policy = caller.resilience.limits["big"].circuit
        for _ in range(policy.failures):
            await caller.resilience.circuits.record("big", policy, "failure", probe=False, error="UpstreamTimeout")
        slow = asyncio.create_task(gw.chat(teamless, model="slow"))
        await asyncio.sleep(0.1)  # the slow deployment answers after 300 ms
        during = (await gw.client.get("/metrics", headers=AUTH)).text
        assert (await slow).status_code == 200
        after = (await gw.client.get("/metrics", headers=AUTH)).text

    assert value(during, "margin_deployment_in_flight", deployment="slow") == 1
    assert value(after, "margin_deployment_in_flight", deployment="slow") == 0
    assert value(after, "margin_circuit_state", deployment="big", state="open") == 1
    assert value(after, "margin_circuit_state", deployment="big", state="closed") == 0
    assert value(after, "margin_circuit_state", deployment="small", state="closed") == 1
    # team:* at $2 a day, for each team that has a key; research also has its own token budget
    assert value(after, "margin_team_budget_limit", team="search", window="day@UTC", unit="usd") == 2
    spent = value(after, "margin_team_budget_spent", team="search", window="day@UTC", unit="usd")
    assert spent is not None and 0 < spent < 0.02
    remaining = value(after, "margin_team_budget_remaining", team="search", window="day@UTC", unit="usd")
    assert remaining == 2 - spent
    assert value(after, "margin_team_budget_reserved", team="search", window="day@UTC", unit="usd") == 0
    assert value(after, "margin_team_budget_limit", team="research", window="month@UTC", unit="tokens") == 1000
    assert value(after, "margin_errors_total", endpoint="chat", error="rate_limit_exceeded") == 1
    assert "RateLimited" not in after
    assert not re.search(r"^margin_\w+_created", after, re.M)
    teams = {dict(labels).get("team") for (name, labels) in samples(after) if name.startswith("margin_team_budget")}
    assert teams == {"search", "research", "default"}  # bounded: configured teams with keys, nothing per key or request


async def test_a_store_that_fails_or_hangs_leaves_the_last_values_and_is_counted(tmp_path: Path) -> None:
    async with serve(tmp_path, TEAM_BUDGETS) as gw:
        await gw.create_key(team="search")
        caller = gw.pipeline.caller
        policy = caller.resilience.limits["big"].circuit
        for _ in range(policy.failures):
            await caller.resilience.circuits.record("big", policy, "failure", probe=False, error="UpstreamTimeout")
        first = (await gw.client.get("/metrics", headers=AUTH)).text

        async def fails(policies: object) -> list[CircuitView]:
            raise StorageError("redis: TimeoutError")

        async def hangs(policies: object) -> list[CircuitView]:
            await asyncio.sleep(60)
            return []

        caller.resilience.circuits.views = fails
        second = (await gw.client.get("/metrics", headers=AUTH)).text
        caller.resilience.circuits.views = hangs
        own = OperatorGauges(caller, gw.pipeline.limits, timeout_s=0.05)
        await own.refresh()
    assert value(first, "margin_circuit_state", deployment="big", state="open") == 1
    assert value(second, "margin_circuit_state", deployment="big", state="open") == 1  # the last values
    assert value(first, "margin_gauges_refresh_failures_total") == 0
    assert value(second, "margin_gauges_refresh_failures_total") == 1
    assert own.refresh_failures == 1 and own.circuits == {}  # timed out before anything was read
