"""The one vocabulary of the `error` label of `margin_errors` (docs/metrics.md).

Upstream failures are named by their failover class, the names docs/failover.md and a model
group's `on_error` use (`rate_limit`, `overloaded`, `timeout`, ...; margin.resilience.error_actions).
The gateway's own refusals and client errors are named by the OpenAI error `code` the client got
(`budget_exceeded`, `rate_limit_exceeded`, `invalid_api_key`, ...), so `rate_limit` (an upstream
said 429) and `rate_limit_exceeded` (margin's own limit refused) are never confused. Anything
else (a bug: not a MarginError) is `internal`.
"""

from __future__ import annotations

from margin import errors
from margin.resilience.error_actions import error_class_of_type

INTERNAL = "internal"


def _subclasses(cls: type[errors.MarginError]) -> dict[str, type[errors.MarginError]]:
    found = {cls.__name__: cls}
    for sub in cls.__subclasses__():
        found.update(_subclasses(sub))
    return found


class ErrorLabels:
    """Error class name (how a request's end is recorded) -> label; classes are looked up once."""

    def __init__(self) -> None:
        self._labels: dict[str, str] = {}

    def __call__(self, status: str) -> str:
        label = self._labels.get(status)
        if label is None:
            label = self._labels[status] = self._label_of(status)
        return label

    @staticmethod
    def _label_of(status: str) -> str:
        cls = _subclasses(errors.MarginError).get(status)  # walked again only for a name not seen yet
        if cls is None:
            return INTERNAL
        return error_class_of_type(cls) or cls.code or INTERNAL
