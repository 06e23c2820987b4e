"""The gauges an operator alerts on, read when Prometheus scrapes (docs/metrics.md):

- `margin_circuit_state{deployment,state}`: 1 for the state each deployment's circuit is in
  (closed, open, half_open), 0 for the others; shared circuits are read from Redis;
- `margin_deployment_in_flight{deployment}`: upstream calls this replica has open;
- `margin_team_budget_{limit,spent,reserved,remaining}{team,window,unit}`: every team budget
  (`scope: team:NAME`, and `team:*` for each team that has a key), unit `usd` or `tokens`.

Labels are deployments and teams only (plus the fixed state, window and unit values), so the
series count grows with the config, never with traffic. Circuit state and budgets live in stores
that may be remote, so they are read by `refresh` (awaited by the /metrics handler, bounded by a
timeout) and only served by `collect`; a store that does not answer in time leaves the last values
in place and counts `margin_gauges_refresh_failures_total`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from decimal import Decimal

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from margin.budgets.rules import Applied, key_rules
from margin.budgets.status import budget_scopes, describe
from margin.identity.principals import principal_of
from margin.identity.service import policy_of_record
from margin.pipeline.call import Caller
from margin.pipeline.limits import Limits
from margin.resilience.circuit import CircuitState
from margin.storage.protocols import StorageError

log = logging.getLogger("margin.metrics")
TEAM_SCOPE = "team:"
BUDGET_FIELDS = ("limit", "spent", "reserved", "remaining")
_SCOPES_FRESH_S = 30.0  # the team list comes from the key store: re-read at most this often


class OperatorGauges:
    def __init__(self, caller: Caller, limits: Limits, *, timeout_s: float = 2.0) -> None:
        self.caller = caller
        self.limits = limits
        self.timeout_s = timeout_s
        self.circuits: dict[str, CircuitState] = {}
        self.budgets: dict[tuple[str, str, str], dict[str, float]] = {}  # (team, window, unit) -> field -> value
        self.refresh_failures = 0
        self._scopes: list[Applied] = []
        self._scopes_read_at = float("-inf")

    async def refresh(self) -> None:
        """Read circuit states and team budgets; on a slow or failing store keep the last values."""
        try:
            await asyncio.wait_for(self._read(), self.timeout_s)
        except (TimeoutError, StorageError) as exc:
            self.refresh_failures += 1
            log.warning("metrics: circuit or budget state unreadable, serving the last values: %r", exc)

    async def _read(self) -> None:
        resilience = self.caller.resilience
        policies = {name: limits.circuit for name, limits in resilience.limits.items()}
        self.circuits = {view.deployment: view.state for view in await resilience.circuits.views(policies)}
        limiter = self.limits.limiter
        if limiter is None:
            return
        budgets: dict[tuple[str, str, str], dict[str, float]] = {}
        for applied in await self._team_scopes():
            entry = await describe(limiter, applied)
            if "error" in entry:
                raise StorageError(entry["error"])
            unit = "usd" if entry["unit"] == "USD" else "tokens"
            team = applied.scope.removeprefix(TEAM_SCOPE)
            budgets[(team, str(entry["window"]), unit)] = {f: float(Decimal(str(entry[f]))) for f in BUDGET_FIELDS}
        self.budgets = budgets

    async def _team_scopes(self) -> list[Applied]:
        limiter, keys = self.limits.limiter, self.limits.keys
        assert limiter is not None
        now = time.monotonic()
        if now - self._scopes_read_at < _SCOPES_FRESH_S:
            return self._scopes
        records = [k for k in await keys.list() if k.revoked_at is None] if keys is not None else []
        principals = [principal_of(k) for k in records]
        own = {k.key_id: key_rules(k.key_id, policy_of_record(k), self.limits.zone) for k in records}
        scopes = budget_scopes(limiter, principals, own)
        # a key with no team would be `team:` under a `team:*` rule: not a team
        self._scopes = [a for a in scopes if a.scope.startswith(TEAM_SCOPE) and a.scope not in ("team:", "team:*")]
        self._scopes_read_at = now
        return self._scopes

    def collect(self) -> Iterator[Metric]:
        yield self._circuit_family()
        in_flight = GaugeMetricFamily(
            "margin_deployment_in_flight", "Upstream calls open on this replica", labels=["deployment"]
        )
        for name, count in sorted(self.caller.in_flight.items()):
            in_flight.add_metric([name], count)
        yield in_flight
        yield from self._budget_families()
        yield CounterMetricFamily(
            "margin_gauges_refresh_failures",
            "Scrapes that could not read circuit or budget state in time (the last values were served)",
            value=self.refresh_failures,
        )

    def _circuit_family(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "margin_circuit_state", "1 for the state each deployment's circuit is in", labels=["deployment", "state"]
        )
        for name in sorted(self.caller.resilience.limits):
            current = self.circuits.get(name, CircuitState.CLOSED)
            for state in CircuitState:
                family.add_metric([name, state.value], 1 if state is current else 0)
        return family

    def _budget_families(self) -> Iterator[GaugeMetricFamily]:
        helps = {
            "limit": "Team budget limit this window",
            "spent": "Team budget spent this window (settled requests)",
            "reserved": "Team budget held by requests in flight (their worst case)",
            "remaining": "Team budget left this window: limit - spent - reserved",
        }
        for field in BUDGET_FIELDS:
            family = GaugeMetricFamily(f"margin_team_budget_{field}", helps[field], labels=["team", "window", "unit"])
            for (team, window, unit), values in sorted(self.budgets.items()):
                family.add_metric([team, window, unit], values[field])
            yield family
