"""Prometheus series of rollouts, registered on the app's registry (never a global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class RolloutMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.transitions = Counter(
            "margin_rollout_transitions", "Rollout state changes (each counted by the replica that made it)",
            ["model_group", "from_state", "to_state", "actor"], registry=r,
        )  # fmt: skip
        self.requests = Counter(
            "margin_rollout_requests", "Requests answered under a rollout, by arm", ["model_group", "arm"], registry=r
        )
        self.shadow_dropped = Counter(
            "margin_rollout_shadow_dropped", "Shadow calls dropped (queue full or experiment budget spent)",
            ["model_group", "why"], registry=r,
        )  # fmt: skip
        self.judge = Counter(
            "margin_rollout_judge", "Online judge outcomes (agreed, disagreed, unparseable, error) and drops "
            "(queue_full, budget)", ["model_group", "outcome"], registry=r,
        )  # fmt: skip
        self.streams_unjudged = Counter(
            "margin_rollout_streams_unjudged", "Streamed answers due for grading, shadow or judge that were not "
            "handed off (client_left, error, too_long, not_whole)", ["model_group", "why"], registry=r,
        )  # fmt: skip
        self.samples_skipped = Counter(
            "margin_production_samples_skipped", "Requests chosen for a production sample not kept (queue_full, "
            "client_left, error, not_whole, too_long, timeout, worker_died)", ["model_group", "why"], registry=r,
        )  # fmt: skip
        self.candidate_share = Gauge(
            "margin_rollout_candidate_share", "Share of a group's requests this replica sends to the candidate",
            ["model_group"], registry=r,
        )  # fmt: skip

    def transition(self, group: str, from_state: str, to_state: str, actor: str) -> None:
        kind = actor.split(":", 1)[0]  # "auto", "cli", "admin-api": bounded label values
        self.transitions.labels(group, from_state or "-", to_state, kind).inc()

    def sample_skipped(self, group: str, why: str) -> None:
        self.samples_skipped.labels(group, why).inc()
