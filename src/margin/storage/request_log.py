"""The per-request log read back from the ledger: one request's rows, and a filtered, paginated list
of requests (LiteLLM users know it as spend logs).

A request is listed once, by its last row (the answering attempt, or the last one tried when none
answered, or its one refused or cache-hit row): that row's status is the request's status and its
`extra` holds the routing decision (`margin.pipeline.route_labels.decision_extra`). Pages go newest
first; a page's `next_cursor` (the last row's ts and attempt_id) asks for the rows strictly older.
Prompts and answers are never in the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class RequestQuery:
    """Which requests to list. Empty strings and None filter nothing."""

    team: str = ""
    status: str = ""
    since: float | None = None  # epoch seconds: requests whose last row started at or after
    before: tuple[float, str] | None = None  # the cursor: (ts, attempt_id) of the previous page's last row
    limit: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {self.limit}")


def encode_cursor(ts: float, attempt_id: str) -> str:
    return f"{ts!r}/{attempt_id}"


def decode_cursor(text: str) -> tuple[float, str]:
    ts, sep, attempt_id = text.partition("/")
    try:
        if not sep:
            raise ValueError(text)
        return float(ts), attempt_id
    except ValueError:
        raise ValueError(f"not a cursor from a previous page: {text!r}") from None
