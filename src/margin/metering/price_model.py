"""Price entries: USD per million tokens per usage bucket, with tiers, batch discount and provenance.

One entry is written as a flat mapping (in prices.yaml, in the user override file and in config
overrides), so that overriding one figure is one key:

    gpt-4o:
      provider: openai
      aliases: [gpt-4o-2024-08-06]
      input: "2.50"            # USD per 1M uncached input tokens
      cache_read: "1.25"
      output: "10.00"
      batch_multiplier: "0.5"  # Batch API price = standard price x 0.5
      long_context: [{above_input_tokens: 200000, input: "5.00", output: "15.00"}]
      source: https://openai.com/api/pricing/
      effective_from: 2024-08-06
      verified_at: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal
from typing import Any

from margin.metering._numbers import parse_usd, plain

# Every per-bucket price an entry (or a long-context tier) may state.
PRICE_FIELDS = (
    "input",
    "output",
    "cache_read",
    "cache_write",
    "cache_write_1h",
    "reasoning",
    "input_audio",
    "output_audio",
    "input_image",
)
_ENTRY_FIELDS = frozenset(
    {
        *PRICE_FIELDS,
        "provider",
        "aliases",
        "long_context",
        "batch_multiplier",
        "source",
        "effective_from",
        "verified_at",
        "checked_against",
        "notes",
    }
)


@dataclass(frozen=True, slots=True)
class BucketPrices:
    """USD per million tokens for each bucket. None means "priced as" a base bucket:

    cache_read, cache_write -> input (no discount declared: the safe side is the full price);
    cache_write_1h -> cache_write; reasoning -> output;
    input_audio, input_image -> input and output_audio -> output, flagged on the Cost as an
    assumed modality price because audio is usually dearer than text.
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    reasoning: Decimal | None = None
    input_audio: Decimal | None = None
    output_audio: Decimal | None = None
    input_image: Decimal | None = None

    @property
    def effective_cache_write(self) -> Decimal:
        return self.input if self.cache_write is None else self.cache_write


@dataclass(frozen=True, slots=True)
class LongContextTier:
    """Prices for every token of a request whose prompt exceeds `above_input_tokens`."""

    above_input_tokens: int
    prices: BucketPrices


@dataclass(frozen=True, slots=True)
class ModelPrice:
    name: str
    provider: str
    prices: BucketPrices
    long_context: tuple[LongContextTier, ...] = ()
    batch_multiplier: Decimal | None = None
    aliases: tuple[str, ...] = ()
    source: str = ""
    effective_from: date | None = None
    verified_at: date | None = None
    checked_against: str = ""
    notes: str = ""
    version: str = ""  # the price version recorded with each cost, set by the catalog
    origin: str = "builtin"  # builtin | user | config

    def tier_for(self, input_tokens: int) -> LongContextTier | None:
        """The highest tier whose threshold the prompt exceeds, if any."""
        chosen: LongContextTier | None = None
        for tier in self.long_context:
            if input_tokens > tier.above_input_tokens:
                chosen = tier
        return chosen


def _optional_usd(raw: Mapping[str, Any], key: str, where: str) -> Decimal | None:
    value = raw.get(key)
    return None if value is None else parse_usd(value, what=f"{where}.{key}")


def parse_bucket_prices(raw: Mapping[str, Any], where: str) -> BucketPrices:
    for key in ("input", "output"):
        if raw.get(key) is None:
            raise ValueError(f"{where}: '{key}' price is required")
    values = {key: _optional_usd(raw, key, where) for key in PRICE_FIELDS}
    return BucketPrices(**values)  # type: ignore[arg-type]  # input/output checked above


def _parse_tier(raw: Any, where: str) -> LongContextTier:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: a long_context tier must be a mapping")
    threshold = raw.get("above_input_tokens")
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold <= 0:
        raise ValueError(f"{where}: above_input_tokens must be a positive integer")
    return LongContextTier(threshold, parse_bucket_prices(raw, f"{where}[>{threshold}]"))


def _parse_date(value: Any, what: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{what}: not an ISO date: {value!r}") from None
    raise ValueError(f"{what}: not a date: {value!r}")


def _string_tuple(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{what}: must be a list of strings")
    return tuple(value)


def parse_model_price(name: str, raw: Any, *, version: str, origin: str) -> ModelPrice:
    """A validated entry. Raises ValueError naming the entry and field on any problem."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{name}: an entry must be a mapping")
    unknown = set(raw) - _ENTRY_FIELDS
    if unknown:
        raise ValueError(f"{name}: unknown field(s) {sorted(unknown)}")
    tiers = raw.get("long_context") or []
    if not isinstance(tiers, list):
        raise ValueError(f"{name}: long_context must be a list")
    multiplier = raw.get("batch_multiplier")
    return ModelPrice(
        name=name,
        provider=str(raw.get("provider") or "unknown"),
        prices=parse_bucket_prices(raw, name),
        long_context=tuple(sorted((_parse_tier(t, name) for t in tiers), key=lambda t: t.above_input_tokens)),
        batch_multiplier=None if multiplier is None else parse_usd(multiplier, what=f"{name}.batch_multiplier"),
        aliases=_string_tuple(raw.get("aliases"), f"{name}.aliases"),
        source=str(raw.get("source") or ""),
        effective_from=_parse_date(raw.get("effective_from"), f"{name}.effective_from"),
        verified_at=_parse_date(raw.get("verified_at"), f"{name}.verified_at"),
        checked_against=str(raw.get("checked_against") or ""),
        notes=str(raw.get("notes") or ""),
        version=version,
        origin=origin,
    )


def format_price(amount: Decimal) -> str:
    """A price as written in catalogs: plain digits, no exponent, no trailing zeros ('2.5')."""
    return plain(amount)


def bucket_prices_to_mapping(prices: BucketPrices) -> dict[str, str]:
    return {f.name: plain(value) for f in fields(prices) if (value := getattr(prices, f.name)) is not None}


def model_price_to_mapping(price: ModelPrice) -> dict[str, Any]:
    """The flat mapping form of an entry (strings for money, ISO strings for dates)."""
    body: dict[str, Any] = {"provider": price.provider}
    if price.aliases:
        body["aliases"] = list(price.aliases)
    body.update(bucket_prices_to_mapping(price.prices))
    if price.long_context:
        body["long_context"] = [
            {"above_input_tokens": tier.above_input_tokens, **bucket_prices_to_mapping(tier.prices)}
            for tier in price.long_context
        ]
    if price.batch_multiplier is not None:
        body["batch_multiplier"] = plain(price.batch_multiplier)
    optional = {
        "source": price.source,
        "effective_from": price.effective_from.isoformat() if price.effective_from else None,
        "verified_at": price.verified_at.isoformat() if price.verified_at else None,
        "checked_against": price.checked_against,
        "notes": price.notes,
    }
    body.update({key: value for key, value in optional.items() if value})
    return body
