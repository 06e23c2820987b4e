"""The ledger's table layout, shared by every SQL backend: column order, and LedgerRow <-> values.

Money is exact: every amount is quantized half-even to MONEY_QUANTUM (1e-12 USD, the GPU-time
quantum of `margin.metering.pricing`; catalog prices never produce finer amounts) before it is
stored, so SQLite (TEXT) and PostgreSQL (NUMERIC(20,12)) hold the same digits.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import fields
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from margin.storage.ledger_row import COST_COLUMNS, LedgerRow

MONEY_QUANTUM = Decimal("1e-12")
MONEY_COLUMNS = (*COST_COLUMNS, "cost_total", "saved_cost", "routing_savings")
ATTEMPTS_TABLE = "ledger_attempts"
ROLLUP_TABLE = "ledger_rollup"
AUDIT_TABLE = "ledger_audit"

ColumnKind = Literal["plain", "money", "bool", "tags", "extra"]
_BOOL_FIELDS = frozenset({"is_final", "price_unknown", "batch"})
_COLUMN_NAMES = {"user": "user_name"}  # `user` is reserved in PostgreSQL


def _kind(name: str) -> ColumnKind:
    if name in MONEY_COLUMNS:
        return "money"
    if name in _BOOL_FIELDS:
        return "bool"
    if name == "tags":
        return "tags"
    if name == "extra":
        return "extra"
    return "plain"


FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(LedgerRow))
COLUMN_NAMES: tuple[str, ...] = tuple(_COLUMN_NAMES.get(name, name) for name in FIELD_NAMES)
COLUMN_KINDS: tuple[ColumnKind, ...] = tuple(_kind(name) for name in FIELD_NAMES)


def quantize_money(amount: Decimal) -> Decimal:
    return amount.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)


_ZERO_TEXT = format(quantize_money(Decimal(0)), "f")


def money_text(amount: Decimal) -> str:
    """Fixed-point text of a quantized amount: never scientific notation. (Most of a row's cost
    columns are zero: their text is made once.)"""
    if amount == 0 and not amount.is_signed():
        return _ZERO_TEXT
    return format(quantize_money(amount), "f")


_ALL_FIELDS = operator.attrgetter(*FIELD_NAMES)  # one C call reads every field, in column order
_MONEY_AT = tuple(i for i, kind in enumerate(COLUMN_KINDS) if kind == "money")
_BOOL_AT = tuple(i for i, kind in enumerate(COLUMN_KINDS) if kind == "bool")
_TAGS_AT = tuple(i for i, kind in enumerate(COLUMN_KINDS) if kind == "tags")
_EXTRA_AT = tuple(i for i, kind in enumerate(COLUMN_KINDS) if kind == "extra")
# What json.dumps(..., ensure_ascii=False[, sort_keys=True]) writes, without building an encoder per call.
_TAGS_JSON = json.JSONEncoder(ensure_ascii=False).encode
_EXTRA_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode


def row_values(row: LedgerRow, *, money: Callable[[Decimal], Any], boolean: Callable[[bool], Any]) -> tuple[Any, ...]:
    """The row's column values in COLUMN_NAMES order; `money` and `boolean` adapt to the driver.
    (Runs for every row on the store's writer thread, holding the GIL the event loop needs: the
    fields are read at once and only the columns that need it are converted.)"""
    out: list[Any] = list(_ALL_FIELDS(row))
    for i in _MONEY_AT:
        out[i] = money(out[i])
    for i in _BOOL_AT:
        out[i] = boolean(out[i])
    for i in _TAGS_AT:
        out[i] = _TAGS_JSON(list(out[i]))
    for i in _EXTRA_AT:
        out[i] = _EXTRA_JSON(out[i])
    return tuple(out)


def row_from_values(values: Sequence[Any]) -> LedgerRow:
    """A LedgerRow from a record selected as COLUMN_NAMES (any driver's native types)."""
    kwargs: dict[str, Any] = {}
    for name, kind, value in zip(FIELD_NAMES, COLUMN_KINDS, values, strict=True):
        if kind == "money":
            kwargs[name] = Decimal(str(value))
        elif kind == "bool":
            kwargs[name] = bool(value)
        elif kind == "tags":
            kwargs[name] = tuple(json.loads(value))
        elif kind == "extra":
            kwargs[name] = {str(k): str(v) for k, v in json.loads(value).items()}
        else:
            kwargs[name] = value
    return LedgerRow(**kwargs)
