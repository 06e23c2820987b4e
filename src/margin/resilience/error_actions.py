"""Per error class: retry the same deployment, fail over, or return to the client.

The upstream error is first classified (`margin.providers.classify` turns HTTP answers into error
classes; this module names those classes), then looked up in the model group's table: the defaults
below, overridden per group by `on_error` in the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

from margin import errors
from margin.config.model import NEVER_RETRIED, ErrorAction, ErrorClassName

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

DEFAULT_ACTIONS: Mapping[ErrorClassName, ErrorAction] = {
    # Transient: the next deployment answers sooner than a backoff would, and leaves the struggling
    # one alone. The call stage still retries in place (backoff, Retry-After) when no other
    # deployment is left to try; `retry` in a group's `on_error` retries in place first.
    "rate_limit": "failover",
    "overloaded": "failover",
    "server_error": "failover",
    "connection": "failover",
    # A silent or broken upstream is not asked again within the request: that is how gateways end
    # up retrying a hung endpoint for minutes.
    "timeout": "failover",
    "stream_interrupted": "failover",
    "auth": "failover",
    "model_gone": "failover",
    "capacity": "failover",
    # Only a larger context window can help (the chain filters for one).
    "context_length": "failover",
    # The request is at fault: every model behind the gateway would say the same.
    "content_filter": "return",
    "bad_request": "return",
}

# What says "this deployment is unhealthy" to its circuit breaker. A refused request does not.
TRIPS_CIRCUIT: frozenset[ErrorClassName] = frozenset(
    {"rate_limit", "overloaded", "server_error", "timeout", "connection", "stream_interrupted", "auth", "model_gone"}
)


def error_class(error: errors.MarginError) -> ErrorClassName | None:
    """The failover class of an error, or None for the gateway's own errors (never failed over)."""
    for cls, name in _CLASS_OF:
        if isinstance(error, cls):
            return name
    return None


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """One model group's table. `return` for anything unclassified: never guess a retry."""

    actions: Mapping[ErrorClassName, ErrorAction] = field(default_factory=lambda: dict(DEFAULT_ACTIONS))

    @classmethod
    def with_overrides(cls, overrides: Mapping[ErrorClassName, ErrorAction]) -> ErrorPolicy:
        return cls({**DEFAULT_ACTIONS, **overrides})

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
