"""Per error class: retry the same deployment, fail over, or return to the client.

The upstream error is first classified (`margin.providers.classify` turns HTTP answers into error
classes; this module names those classes), then looked up in the model group's table: the table of
its failover mode (`retry_first` by default, or `failover_first`), overridden per class by the
group's `on_error`. How long a retry waits, and when it gives up and fails over after all, is
`margin.resilience.backoff.in_place_wait`. docs/failover.md has the whole decision table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

from margin import errors
from margin.config.model import NEVER_RETRIED, ErrorAction, ErrorClassName, FailoverMode

ERROR_CLASSES: tuple[ErrorClassName, ...] = get_args(ErrorClassName)

# Most specific first: ContentFiltered and ContextLengthExceeded are UpstreamErrors too.
_CLASS_OF: tuple[tuple[type[errors.MarginError], ErrorClassName], ...] = (
    (errors.ContextLengthExceeded, "context_length"),
    (errors.ContentFiltered, "content_filter"),
    (errors.UpstreamBadRequest, "bad_request"),
    (errors.UpstreamRateLimit, "rate_limit"),
    (errors.UpstreamOverloaded, "overloaded"),
    (errors.UpstreamTimeout, "timeout"),
    (errors.UpstreamConnection, "connection"),
    (errors.StreamInterrupted, "stream_interrupted"),
    (errors.UpstreamAuth, "auth"),
    (errors.UpstreamModelGone, "model_gone"),
    (errors.CapacityExceeded, "capacity"),
    (errors.UpstreamServerError, "server_error"),
    (errors.UpstreamError, "server_error"),
)

# Errors that say "not right now": the same deployment is likely to answer after a short wait.
TRANSIENT: frozenset[ErrorClassName] = frozenset({"rate_limit", "overloaded", "server_error", "connection"})

DEFAULT_ACTIONS: Mapping[ErrorClassName, ErrorAction] = {
    # Transient (`failover.mode: retry_first`, the default): retried on the same deployment when the
    # wait is short (Retry-After up to the deployment's retry_after_cap, else jittered back-off), within
    # its max_retries, the request's retry budget and deadline, and while its circuit stays closed;
    # then failed over. A fallback is often another price or another model: one short wait on the
    # deployment the route chose first is what a careful operator would do by hand.
    "rate_limit": "retry",
    "overloaded": "retry",
    "server_error": "retry",
    "connection": "retry",
    # A silent or broken upstream is not asked again within the request: that is how gateways end
    # up retrying a hung endpoint for minutes.
    "timeout": "failover",
    "stream_interrupted": "failover",
    # Asking again changes nothing: wrong credentials, a model that is gone, a full local queue.
    "auth": "failover",
    "model_gone": "failover",
    "capacity": "failover",
    # Only a larger context window can help (the chain filters for one).
    "context_length": "failover",
    # The request is at fault: every model behind the gateway would say the same.
    "content_filter": "return",
    "bad_request": "return",
}

# `failover.mode: failover_first`, for latency-critical groups: the next deployment answers sooner
# than a back-off would. The call stage still retries a transient error in place when no other
# deployment is left to try.
FAILOVER_FIRST_ACTIONS: Mapping[ErrorClassName, ErrorAction] = {
    **DEFAULT_ACTIONS,
    **dict.fromkeys(TRANSIENT, "failover"),
}

ACTIONS_BY_MODE: Mapping[FailoverMode, Mapping[ErrorClassName, ErrorAction]] = {
    "retry_first": DEFAULT_ACTIONS,
    "failover_first": FAILOVER_FIRST_ACTIONS,
}

# What says "this deployment is unhealthy" to its circuit breaker. A refused request does not.
TRIPS_CIRCUIT: frozenset[ErrorClassName] = frozenset(
    {"rate_limit", "overloaded", "server_error", "timeout", "connection", "stream_interrupted", "auth", "model_gone"}
)


def error_class(error: errors.MarginError) -> ErrorClassName | None:
    """The failover class of an error, or None for the gateway's own errors (never failed over)."""
    return error_class_of_type(type(error))


def error_class_of_type(kind: type[errors.MarginError]) -> ErrorClassName | None:
    """`error_class` of an error class (the metrics' error label names ended requests by class)."""
    for cls, name in _CLASS_OF:
        if issubclass(kind, cls):
            return name
    return None


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """One model group's table. `return` for anything unclassified: never guess a retry."""

    actions: Mapping[ErrorClassName, ErrorAction] = field(default_factory=lambda: dict(DEFAULT_ACTIONS))

    @classmethod
    def with_overrides(
        cls, overrides: Mapping[ErrorClassName, ErrorAction], mode: FailoverMode = "retry_first"
    ) -> ErrorPolicy:
        """The table of `mode`, with a group's `on_error` entries over it."""
        return cls({**ACTIONS_BY_MODE[mode], **overrides})

    def action(self, error: errors.MarginError) -> ErrorAction:
        name = error_class(error)
        if name is None:
            return "return"
        action = self.actions.get(name, "return")
        # Only errors that say so are retried in place: a timeout (silent upstream), a broken stream
        # and anything the request itself caused fail over instead, whatever the table says.
        if action == "retry" and (name in NEVER_RETRIED or not error.retryable):
            return "failover"
        return action
