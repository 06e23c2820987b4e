"""Reading a dead replica's journal back: its ledger rows, and what each request had got to.

A request's `Trace` says whether its reservation was settled and whether its rows reached the
journal (`ended`); with the attempts it started, that decides what its successor does with it
(margin.pipeline.recovery). Records are applied in order and each is idempotent, so a journal whose
open requests were carried into a newer segment (the same lines twice) reads the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from margin.ledger.journal import read_lines
from margin.ledger.spill import row_from_record
from margin.storage.ledger_row import LedgerRow


@dataclass(slots=True)
class Trace:
    request_id: str
    fields: dict[str, Any]  # ledger row fields known at admission (margin.ledger.unreconciled.row_fields)
    reservation: dict[str, Any] | None  # counters, cost_nano, tokens (margin.budgets.intents)
    intent: bool  # the reservation was recorded as an intent in the counter store
    attempts: dict[int, dict[str, Any]] = field(default_factory=dict)
    settled: bool = False
    ended: bool = False


@dataclass(slots=True)
class JournalContents:
    rows: dict[str, LedgerRow] = field(default_factory=dict)  # by attempt_id
    traces: dict[str, Trace] = field(default_factory=dict)

    def spent(self, request_id: str) -> tuple[Decimal, int]:
        """What a request's journaled rows say it cost (USD) and used (tokens)."""
        rows = [row for row in self.rows.values() if row.request_id == request_id]
        cost = sum((row.cost_total for row in rows), Decimal(0))
        tokens = sum(row.input_uncached + row.input_cache_read + row.input_cache_write + row.output
                     + row.output_reasoning for row in rows)  # fmt: skip
        return cost, tokens


def read_journal(paths: Iterable[Path]) -> JournalContents:
    contents = JournalContents()
    for record in read_lines(paths):
        _apply(contents, record)
    return contents


def _apply(contents: JournalContents, record: Mapping[str, Any]) -> None:
    kind = record["k"]
    if kind == "rows":
        for item in record["rows"]:
            row = row_from_record(item)
            contents.rows[row.attempt_id] = row
        return
    request_id = str(record["id"])
    trace = contents.traces.get(request_id)
    if kind == "req":
        if trace is None:
            contents.traces[request_id] = Trace(request_id, dict(record["row"]), record.get("res"),
                                                bool(record.get("intent")))  # fmt: skip
        return
    if trace is None:
        return  # its `req` line was in a segment already deleted: the request was done with
    if kind == "att":
        trace.attempts[int(record["i"])] = dict(record)
    elif kind == "set":
        trace.settled = True
    elif kind == "end":
        trace.ended = True
