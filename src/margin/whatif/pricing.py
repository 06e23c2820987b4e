"""Exact Decimal prices of recorded usage from margin's price catalog (plus the config's overrides).

A model the catalog does not know is reported as unknown and left out of every money figure,
never priced at zero.
"""

from __future__ import annotations

from decimal import Decimal

from margin.metering.catalog import PriceCatalog, load_catalog
from margin.metering.price_model import ModelPrice
from margin.metering.pricing import price_usage
from margin.types import Usage


class Pricer:
    def __init__(self, catalog: PriceCatalog) -> None:
        self.catalog = catalog
        self.unknown: dict[str, int] = {}  # model -> requests it could not price
        self._found: dict[str, ModelPrice | None] = {}

    @classmethod
    def from_overrides(cls, overrides: dict[str, dict[str, object]]) -> Pricer:
        return cls(load_catalog(overrides=overrides or None))

    def price_of(self, model: str) -> ModelPrice | None:
        if model not in self._found:
            self._found[model] = self.catalog.lookup(model)
        return self._found[model]

    def known(self, model: str) -> bool:
        return self.price_of(model) is not None

    def cost(self, model: str, usage: Usage) -> Decimal | None:
        price = self.price_of(model)
        if price is None:
            self.unknown[model] = self.unknown.get(model, 0) + 1
            return None
        return price_usage(usage, price).total.usd
