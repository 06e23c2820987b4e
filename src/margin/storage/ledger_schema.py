"""The ledger's table layout, shared by every SQL backend: column order, and LedgerRow <-> values.

Money is exact: every amount is quantized half-even to MONEY_QUANTUM (1e-12 USD, the GPU-time
quantum of `margin.metering.pricing`; catalog prices never produce finer amounts) before it is
stored, so SQLite (TEXT) and PostgreSQL (NUMERIC(20,12)) hold the same digits.
"""

from __future__ import annotations

import json
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


def money_text(amount: Decimal) -> str:
    """Fixed-point text of a quantized amount: never scientific notation."""
    return format(quantize_money(amount), "f")


def row_values(row: LedgerRow, *, money: Callable[[Decimal], Any], boolean: Callable[[bool], Any]) -> tuple[Any, ...]:
    """The row's column values in COLUMN_NAMES order; `money` and `boolean` adapt to the driver."""
    out: list[Any] = []
    for name, kind in zip(FIELD_NAMES, COLUMN_KINDS, strict=True):
        value = getattr(row, name)
        if kind == "money":
            out.append(money(value))
        elif kind == "bool":
            out.append(boolean(value))
        elif kind == "tags":
            out.append(json.dumps(list(value), ensure_ascii=False))
        elif kind == "extra":
            out.append(json.dumps(value, ensure_ascii=False, sort_keys=True))
        else:
            out.append(value)
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
