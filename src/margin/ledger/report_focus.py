"""`margin report --format focus`: the ledger's exact costs as FinOps FOCUS (1.0) cost and usage
rows, CSV, so finance tools read margin's figures as they read a cloud bill.

One FOCUS row per UTC day x org x team x key x tags x model group x deployment x model, summed from
the ledger's attempt rows with Decimal (never float). Attempts whose price was unknown are never
folded in as zero: they get rows of their own, with `x_PriceUnknownAttempts` set and a
ChargeDescription that says their cost is missing until `margin reprice` prices them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from margin.storage.ledger_row import LedgerRow

FOCUS_VERSION = "1.0"
# FOCUS columns margin can fill, then margin's own (the spec's `x_` prefix for custom columns).
COLUMNS = (
    "BillingAccountId", "BillingAccountName", "SubAccountId", "SubAccountName", "BillingCurrency",
    "BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd", "ChargeCategory",
    "ChargeClass", "ChargeDescription", "ChargeFrequency", "PricingCategory", "BilledCost", "EffectiveCost",
    "ListCost", "ContractedCost", "ConsumedQuantity", "ConsumedUnit", "PricingQuantity", "PricingUnit",
    "ProviderName", "PublisherName", "InvoiceIssuerName", "ServiceCategory", "ServiceName", "ResourceId",
    "ResourceName", "ResourceType", "SkuId", "Tags", "x_Requests", "x_Attempts", "x_InputTokens",
    "x_OutputTokens", "x_CacheSavedCost", "x_PriceUnknownAttempts", "x_FocusVersion",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChargeKey:
    day: str  # YYYY-MM-DD, UTC
    org: str
    team: str
    key_id: str
    user: str
    tags: tuple[str, ...]
    model_group: str
    deployment: str
    model: str
    price_unknown: bool


@dataclass(slots=True)
class ChargeSums:
    cost: Decimal = Decimal(0)
    saved: Decimal = Decimal(0)
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    attempts: int = 0


def charge_key(row: LedgerRow) -> ChargeKey:
    day = datetime.fromtimestamp(row.ts, UTC).date().isoformat()
    return ChargeKey(
        day, row.org, row.team, row.key_id, row.user, tuple(sorted(row.tags)), row.model_group,
        row.deployment, row.model, row.price_unknown,
    )  # fmt: skip


async def focus_charges(rows: AsyncIterator[LedgerRow]) -> dict[ChargeKey, ChargeSums]:
    """The ledger's attempts in the window, summed per charge (exact: Decimal sums of stored costs)."""
    charges: dict[ChargeKey, ChargeSums] = {}
    async for row in rows:
        sums = charges.setdefault(charge_key(row), ChargeSums())
        sums.cost += row.cost_total
        sums.saved += row.saved_cost
        sums.input_tokens += row.input_uncached + row.input_cache_read + row.input_cache_write
        sums.input_tokens += row.input_audio + row.input_image
        sums.output_tokens += row.output + row.output_reasoning + row.output_audio
        sums.attempts += 1
        sums.requests += row.attempt_index == 0
    return charges


def render_focus_csv(charges: dict[ChargeKey, ChargeSums]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for key in sorted(charges, key=lambda k: (k.day, k.org, k.team, k.key_id, k.deployment, k.model, k.tags)):
        writer.writerow(focus_row(key, charges[key]))
    return buffer.getvalue()


def focus_row(key: ChargeKey, sums: ChargeSums) -> dict[str, str]:
    day = datetime.fromisoformat(key.day).replace(tzinfo=UTC)
    month_start = day.replace(day=1)
    month_end = month_start.replace(year=month_start.year + 1, month=1) if month_start.month == 12 else (
        month_start.replace(month=month_start.month + 1)
    )  # fmt: skip
    next_day = datetime.fromordinal(day.toordinal() + 1).replace(tzinfo=UTC)
    tokens = sums.input_tokens + sums.output_tokens
    cost = _money(sums.cost)
    description = f"{key.model} on {key.deployment} ({key.model_group}), {sums.requests} requests"
    if key.price_unknown:
        description += ": price unknown, cost not included until `margin reprice` prices these attempts"
    return {
        "BillingAccountId": key.org, "BillingAccountName": key.org, "SubAccountId": key.team,
        "SubAccountName": key.team, "BillingCurrency": "USD", "BillingPeriodStart": _iso(month_start),
        "BillingPeriodEnd": _iso(month_end), "ChargePeriodStart": _iso(day), "ChargePeriodEnd": _iso(next_day),
        "ChargeCategory": "Usage", "ChargeClass": "", "ChargeDescription": description,
        "ChargeFrequency": "Usage-Based", "PricingCategory": "Standard", "BilledCost": cost, "EffectiveCost": cost,
        "ListCost": cost, "ContractedCost": cost, "ConsumedQuantity": str(tokens), "ConsumedUnit": "Tokens",
        "PricingQuantity": str(tokens), "PricingUnit": "Tokens", "ProviderName": "margin", "PublisherName": key.model,
        "InvoiceIssuerName": "margin", "ServiceCategory": "AI and Machine Learning", "ServiceName": key.model_group,
        "ResourceId": key.deployment, "ResourceName": key.deployment, "ResourceType": "LLM deployment",
        "SkuId": key.model, "Tags": _tags(key), "x_Requests": str(sums.requests), "x_Attempts": str(sums.attempts),
        "x_InputTokens": str(sums.input_tokens), "x_OutputTokens": str(sums.output_tokens),
        "x_CacheSavedCost": _money(sums.saved), "x_FocusVersion": FOCUS_VERSION,
        "x_PriceUnknownAttempts": str(sums.attempts if key.price_unknown else 0),
    }  # fmt: skip


def _tags(key: ChargeKey) -> str:
    """FOCUS Tags: a JSON object; margin's tags `name:value` split at the first colon."""
    tags = {"margin:key_id": key.key_id, "margin:user": key.user, "margin:model_group": key.model_group}
    for tag in key.tags:
        name, _, value = tag.partition(":")
        tags[name] = value
    return json.dumps(tags, sort_keys=True, ensure_ascii=False)


def _money(amount: Decimal) -> str:
    return format(amount.normalize(), "f") if amount else "0"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
