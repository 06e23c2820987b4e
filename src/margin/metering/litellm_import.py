"""Read LiteLLM's `model_prices_and_context_window.json` (MIT) into price entries, and plan an
import against the current catalog: what is added, changed, unchanged, skipped or refused.

LiteLLM stores USD per token as JSON floats (`2.5e-06`). Each is read through `str()` into a
Decimal (the digits LiteLLM wrote, never the binary value) and scaled by 10**6 exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from margin.metering._numbers import parse_usd
from margin.metering.catalog import PriceCatalog
from margin.metering.price_model import PRICE_FIELDS, ModelPrice, model_price_to_mapping, parse_model_price

LITELLM_SOURCE = "https://github.com/BerriAI/litellm/blob/main/model_prices_and_context_window.json"
TOKEN_MODES = frozenset({"chat", "completion", "embedding", "responses"})
MAX_CHANGE_RATIO = Decimal(10)

# LiteLLM per-token field -> margin bucket.
FIELD_MAP = {
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "output_cost_per_reasoning_token": "reasoning",
    "input_cost_per_audio_token": "input_audio",
    "output_cost_per_audio_token": "output_audio",
    "input_cost_per_image_token": "input_image",
}
_TIER_KEY = re.compile(r"^(?P<field>[a-z0-9_]+?)_above_(?P<thousands>\d+)k_tokens$")


def _per_million(value: Any, what: str) -> Decimal:
    return parse_usd(value, what=what).scaleb(6)


def _tiers(raw: Mapping[str, Any], base: Mapping[str, Decimal], name: str) -> list[dict[str, Any]]:
    """`*_above_<N>k_tokens` fields grouped into tiers; a bucket a tier leaves out keeps its
    base price, which is how LiteLLM itself reads a partial tier."""
    by_threshold: dict[int, dict[str, Decimal]] = {}
    for key, value in raw.items():
        match = _TIER_KEY.match(key)
        if match is None or match["field"] not in FIELD_MAP or value is None:
            continue
        bucket = FIELD_MAP[match["field"]]
        tier = by_threshold.setdefault(int(match["thousands"]) * 1000, {})
        tier[bucket] = _per_million(value, f"{name}.{key}")
    return [
        {"above_input_tokens": threshold, **{**base, **prices}} for threshold, prices in sorted(by_threshold.items())
    ]


def _batch_multiplier(raw: Mapping[str, Any], base: Mapping[str, Decimal], name: str) -> Decimal | None:
    """The batch discount as one multiplier; if input and output disagree, the larger (dearer)."""
    ratios = []
    for key, bucket in (
        ("input_cost_per_token_batches", "input"),
        ("output_cost_per_token_batches", "output"),
    ):
        if raw.get(key) is not None and base.get(bucket):
            ratios.append(_per_million(raw[key], f"{name}.{key}") / base[bucket])
    return max(ratios) if ratios else None


def convert_entry(
    name: str, raw: Any, *, provider_aliases: Mapping[str, str], today: date, version: str
) -> ModelPrice | str:
    """A ModelPrice from one LiteLLM entry, or the reason it was skipped. Raises ValueError on
    a malformed price in an entry that is otherwise importable."""
    if not isinstance(raw, Mapping):
        return "not an object"
    mode = raw.get("mode", "chat")
    if mode not in TOKEN_MODES:
        return f"mode {mode!r} is not priced per token"
    if raw.get("input_cost_per_token") is None:
        return "no input_cost_per_token"
    base = {
        bucket: _per_million(raw[key], f"{name}.{key}") for key, bucket in FIELD_MAP.items() if raw.get(key) is not None
    }
    base.setdefault("output", Decimal(0))  # embeddings have no output price
    provider = str(raw.get("litellm_provider") or "unknown")
    entry: dict[str, Any] = {
        **base,
        "provider": provider_aliases.get(provider, provider),
        "long_context": _tiers(raw, base, name),
        "batch_multiplier": _batch_multiplier(raw, base, name),
        "source": str(raw.get("source") or LITELLM_SOURCE),
        "verified_at": today,
        "checked_against": "litellm model_prices_and_context_window.json import",
    }
    return parse_model_price(name, entry, version=version, origin="user")


@dataclass(frozen=True, slots=True)
class PriceChange:
    model: str
    bucket: str
    old: Decimal
    new: Decimal

    @property
    def ratio(self) -> Decimal | None:
        """new / old, or None when one side is zero and the other not (an unbounded change)."""
        if self.old == 0:
            return Decimal(1) if self.new == 0 else None
        return self.new / self.old

    @property
    def beyond_limit(self) -> bool:
        ratio = self.ratio
        return ratio is None or ratio > MAX_CHANGE_RATIO or ratio * MAX_CHANGE_RATIO < 1


@dataclass(slots=True)
class ImportPlan:
    entries: list[ModelPrice] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: dict[str, list[PriceChange]] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def refused(self) -> list[PriceChange]:
        return [change for changes in self.changed.values() for change in changes if change.beyond_limit]


_PROVENANCE = ("aliases", "source", "effective_from", "verified_at", "checked_against", "notes")


def _price_changes(current: ModelPrice, new: ModelPrice) -> list[PriceChange]:
    changes = []
    for bucket in PRICE_FIELDS:
        old_value, new_value = getattr(current.prices, bucket), getattr(new.prices, bucket)
        if old_value is not None and new_value is not None and old_value != new_value:
            changes.append(PriceChange(new.name, bucket, old_value, new_value))
    return changes


def _same_prices(current: ModelPrice, new: ModelPrice) -> bool:
    def priced(entry: ModelPrice) -> dict[str, Any]:
        body = model_price_to_mapping(entry)
        return {key: value for key, value in body.items() if key not in _PROVENANCE}

    return priced(current) == priced(new)


def plan_import(document: Any, catalog: PriceCatalog, *, today: date, version: str) -> ImportPlan:
    """Compare every importable LiteLLM entry with what `catalog` resolves for the same name."""
    if not isinstance(document, Mapping):
        raise ValueError("a LiteLLM price file is a JSON object of model entries")
    plan = ImportPlan()
    for name, raw in document.items():
        if name == "sample_spec":
            continue
        converted = convert_entry(
            str(name), raw, provider_aliases=catalog.provider_aliases, today=today, version=version
        )
        if isinstance(converted, str):
            plan.skipped[str(name)] = converted
            continue
        current = catalog.lookup(converted.name)
        if current is not None:
            converted = _keep_unrecorded_fields(converted, current)
        plan.entries.append(converted)
        if current is None:
            plan.added.append(converted.name)
        elif _same_prices(current, converted):
            plan.unchanged.append(converted.name)
        else:
            plan.changed[converted.name] = _price_changes(current, converted)
    return plan


# Fields LiteLLM often leaves out although the provider has them (batch prices for Anthropic,
# 1-hour cache writes, tiers): its silence means "not recorded", not "none", so the current
# entry's value is kept rather than dropping a discount or a surcharge.
_INHERITED = (*(f for f in PRICE_FIELDS if f not in ("input", "output")), "long_context", "batch_multiplier")


def _keep_unrecorded_fields(entry: ModelPrice, current: ModelPrice) -> ModelPrice:
    body = model_price_to_mapping(entry)
    previous = model_price_to_mapping(current)
    body.update({key: previous[key] for key in _INHERITED if key not in body and key in previous})
    if current.name == entry.name and current.aliases:
        body["aliases"] = list(current.aliases)  # LiteLLM files carry no aliases
    return parse_model_price(entry.name, body, version=entry.version, origin=entry.origin)
