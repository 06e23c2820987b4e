"""Everything failover keeps beyond one request, built once by `create_app` and owned by the app."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from margin.config.model import AdaptiveTimeouts, DeploymentConfig, FailoverConfig, MarginConfig
from margin.config.streaming import StreamingConfig
from margin.resilience.attempt_rate import AttemptLimiter
from margin.resilience.chain import DeploymentLimits
from margin.resilience.circuit import CircuitStore, InMemoryCircuits
from margin.resilience.deadline import Clock
from margin.resilience.error_actions import ErrorPolicy
from margin.resilience.observed_latency import ObservedLatency


@dataclass(slots=True)
class Resilience:
    limits: Mapping[str, DeploymentLimits]
    circuits: CircuitStore
    limiter: AttemptLimiter
    failover: FailoverConfig = field(default_factory=FailoverConfig)
    policies: Mapping[str, ErrorPolicy] = field(default_factory=dict)  # by model group
    members: Mapping[str, frozenset[str]] = field(default_factory=dict)  # model group -> its own deployments
    streaming: Mapping[str, StreamingConfig] = field(default_factory=dict)  # model group -> its stream buffer
    clock: Clock = time.monotonic
    rand: Callable[[], float] = random.random
    latency: ObservedLatency = field(default_factory=lambda: ObservedLatency(AdaptiveTimeouts()))
    default_policy: ErrorPolicy = field(default_factory=ErrorPolicy)  # a group without a table of its own

    @classmethod
    def from_config(
        cls, config: MarginConfig, *, circuits: CircuitStore | None = None, clock: Clock = time.monotonic
    ) -> Resilience:
        base = cls.for_deployments(config.deployments, circuits=circuits, clock=clock)
        base.failover = config.failover
        base.latency = ObservedLatency(config.failover.adaptive_timeouts, clock)
        mode = config.failover.mode
        base.default_policy = ErrorPolicy.with_overrides({}, mode)
        base.policies = {g.name: ErrorPolicy.with_overrides(g.on_error, g.failover_mode or mode) for g in config.models}
        base.members = {g.name: frozenset(g.deployments) for g in config.models}
        base.streaming = {g.name: g.streaming for g in config.models if g.streaming.buffers}
        return base

    @classmethod
    def for_deployments(
        cls,
        deployments: Iterable[DeploymentConfig],
        *,
        circuits: CircuitStore | None = None,
        clock: Clock = time.monotonic,
    ) -> Resilience:
        deployments = list(deployments)
        rates = {d.name: d.max_attempts_per_second for d in deployments if d.max_attempts_per_second}
        return cls(
            limits={d.name: DeploymentLimits.of(d) for d in deployments},
            circuits=circuits or InMemoryCircuits(clock),
            limiter=AttemptLimiter(rates, clock),
            clock=clock,
            latency=ObservedLatency(AdaptiveTimeouts(), clock),
        )

    def policy(self, group: str) -> ErrorPolicy:
        return self.policies.get(group) or self.default_policy

    def stream_buffer(self, group: str) -> StreamingConfig | None:
        """The group's `streaming` settings when it holds the first tokens of its streams, else None."""
        return self.streaming.get(group)

    def is_own(self, group: str, deployment: str) -> bool:
        """Does `deployment` serve `group` itself (rather than one of its fallback groups)?"""
        members = self.members.get(group)
        return deployment == group if members is None else deployment in members
