"""The timing rollups' layout (`ledger_timing_rollup`): per rollup cell, the latency and TTFT bins of
`margin.storage.rollups.latency_bin` as one column each (NULL where no attempt fell), and the output
tokens of rows that measured a generation rate with the microseconds that generation took.

A cell's histograms are a fixed set of columns, so reading a window costs the same per cell however
many ledger rows the cell summed (the database sums the columns of the window's cells); no page
reads one row per filled bin. Driver-free: statements live in `ledger_sql`, values are shaped here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from margin.storage.protocols import Timings
from margin.storage.rollups import FIRST_BIN, N_BINS, RollupKey, TimingDelta

TIMING_TABLE = "ledger_timing_rollup"
METRICS = ("latency", "ttft")
TOTAL_COLUMNS = ("generated_tokens", "generation_us")
BIN_COLUMNS = tuple(f"{metric}_{i:02d}" for metric in METRICS for i in range(N_BINS))


def bin_column(metric: str, index: int) -> str:
    """The column of bin `index` (a `latency_bin` value) of `metric`."""
    return f"{metric}_{index - FIRST_BIN:02d}"


NO_TIMINGS = Timings({}, {})


def _cells(delta: TimingDelta) -> dict[str, int]:
    return {
        **{bin_column("latency", index): n for index, n in delta.latency.items()},
        **{bin_column("ttft", index): n for index, n in delta.ttft.items()},
    }


def column_params(timings: Mapping[RollupKey, TimingDelta]) -> dict[str, list[tuple[Any, ...]]]:
    """Upsert parameters per bin column: each filled bin of a cell is one upsert of that column's
    statement (at most len(BIN_COLUMNS) statements, each prepared once), the cell's generation sums
    riding on its first. SQLite, whose single writer needs no lock order."""
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for key, delta in timings.items():
        tokens, us = delta.generated_tokens, delta.generation_us
        for column, n in _cells(delta).items():
            groups.setdefault(column, []).append((*key, tokens, us, n))
            tokens = us = 0
    return groups


def dense_params(timings: Mapping[RollupKey, TimingDelta]) -> list[tuple[Any, ...]]:
    """Upsert parameters of every bin column (NULL where empty), in key order (bulk loads)."""
    out = []
    for key, delta in sorted(timings.items()):
        filled = _cells(delta)
        out.append((*key, delta.generated_tokens, delta.generation_us, *(filled.get(c) for c in BIN_COLUMNS)))
    return out


def dense_columns(timings: Mapping[RollupKey, TimingDelta]) -> list[list[Any]]:
    """`dense_params` as one list per column, the parameters of an `unnest` upsert, in key order so
    concurrent writers lock cells in the same order (PostgreSQL); built column-wise, as most bins
    of most cells are empty."""
    items = sorted(timings.items())
    columns: list[list[Any]] = [[key[i] for key, _ in items] for i in range(4)]
    columns += [[d.generated_tokens for _, d in items], [d.generation_us for _, d in items]]
    bins: dict[str, list[Any]] = {column: [None] * len(items) for column in BIN_COLUMNS}
    for j, (_, delta) in enumerate(items):
        for column, n in _cells(delta).items():
            bins[column][j] = n
    return columns + [bins[column] for column in BIN_COLUMNS]


def timings_of(values: Sequence[Any]) -> Timings:
    """Timings from `generated_tokens, generation_us, <BIN_COLUMNS>` values (sums over cells)."""
    bins = values[2:]
    latency = {FIRST_BIN + i: int(n) for i, n in enumerate(bins[:N_BINS]) if n}
    ttft = {FIRST_BIN + i: int(n) for i, n in enumerate(bins[N_BINS:]) if n}
    return Timings(latency, ttft, int(values[0] or 0), int(values[1] or 0))


def timings_by_value(records: Iterable[Sequence[Any]]) -> dict[str, Timings]:
    """`LedgerSql.timing_report` records (value, totals..., bins...) by value."""
    return {str(record[0]): timings_of(record[1:]) for record in records}


def timing_buckets(records: Iterable[Sequence[Any]]) -> list[tuple[int, str, Timings]]:
    """`LedgerSql.bucket_timings` records (bucket_start, value, totals..., bins...)."""
    return [(int(record[0]), str(record[1]), timings_of(record[2:])) for record in records]
