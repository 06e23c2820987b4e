"""API token prices for the planner, read from metering's price catalog: the catalog the ledger is
billed with, so that a price change (a user prices file, a config override, `margin prices import`)
moves the ledger and the planner together.

The planner's catalog.yaml keeps only what the planner alone needs about a hosted API (context
limit, regulated use, TTFT, deprecation) and names the metering entry that prices it: `model`,
resolved exactly as metering resolves an upstream model name, with `provider` as the hint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from margin.metering.catalog import PriceCatalog
from margin.metering.price_model import ModelPrice

# The fields filled in from the metering entry; the planner's catalog data must not state them.
PRICE_FIELDS = (
    "input_usd_per_mtok",
    "output_usd_per_mtok",
    "cached_input_usd_per_mtok",
    "batch_input_usd_per_mtok",
    "batch_output_usd_per_mtok",
    "price_version",
    "price_source",
)


def api_price_fields(price: ModelPrice) -> dict[str, Any]:
    """The planner's view of one metering entry (USD per 1M tokens). Standard rates only: long-context
    tiers are not applied, as the planner works with mean request sizes. No cached or batch rate in the
    entry means none offered (the planner then bills cached input at the input rate and batch work at
    the standard rates)."""
    buckets, multiplier = price.prices, price.batch_multiplier
    return {
        "input_usd_per_mtok": buckets.input,
        "output_usd_per_mtok": buckets.output,
        "cached_input_usd_per_mtok": buckets.cache_read,
        "batch_input_usd_per_mtok": None if multiplier is None else buckets.input * multiplier,
        "batch_output_usd_per_mtok": None if multiplier is None else buckets.output * multiplier,
        "price_version": price.version,
        "price_source": price.source,
    }


def priced_apis(apis: Mapping[str, Mapping[str, Any]], prices: PriceCatalog) -> dict[str, dict[str, Any]]:
    """Each API entry of the planner's catalog data with its token prices taken from `prices`.

    Raises ValueError naming every API the price catalog cannot price (an unknown price is never
    zero) and every entry that states a price of its own (a price lives in one place)."""
    stated = sorted(api_id for api_id, entry in apis.items() if any(f in entry for f in PRICE_FIELDS))
    if stated:
        raise ValueError(
            f"planner catalog entries {stated} state token prices: API prices live in the metering price "
            "catalog (margin/metering/prices.yaml, a user prices file or config metering.prices)"
        )
    out: dict[str, dict[str, Any]] = {}
    unpriced: list[str] = []
    for api_id, entry in apis.items():
        found = prices.lookup(str(entry["model"]), str(entry["provider"]))
        if found is None:
            unpriced.append(f"{api_id} ({entry['model']})")
            continue
        out[api_id] = {**entry, **api_price_fields(found)}
    if unpriced:
        raise ValueError(f"the price catalog {prices.version} has no price for planner APIs: {', '.join(unpriced)}")
    return out
