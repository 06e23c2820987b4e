"""Decimal arithmetic helpers for the planner. Every amount is a `Decimal`; float figures (efficiencies,
hours, token means) only ever enter money arithmetic through `to_decimal`. Prices are parsed by metering's
price parser (see `margin.planner.catalog`); the planner has no money type of its own."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
MILLION = Decimal(1_000_000)


def to_decimal(value: object) -> Decimal:
    """Convert YAML scalars to Decimal without binary-float noise (0.3 -> Decimal('0.3'), not 0.2999...)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not an amount of money")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr gives the shortest string that round-trips, which is what the YAML author wrote.
        return Decimal(repr(value))
    if isinstance(value, str):
        return Decimal(value.strip())
    raise TypeError(f"cannot read {value!r} as an amount")


def cents(amount: Decimal) -> Decimal:
    """Round for presentation only; internal sums keep full precision."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def per_million(amount: Decimal, tokens: Decimal) -> Decimal | None:
    """Dollars per million tokens, or None when no tokens flow."""
    if tokens <= 0:
        return None
    return amount * MILLION / tokens
