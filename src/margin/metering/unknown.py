"""What happens when a model has no price: the `block | alert | zero_by_declaration` policy.

- block: refuse the request before any upstream call (`check_price_known` raises PriceUnknown);
  a deployment that cannot be priced may be skipped for the next one (failover).
- alert (default): serve it; the cost is 0 but marked `price_unknown`, and a warning is logged
  here. The ledger row and the `price_unknown` metric are the caller's to write.
- zero_by_declaration: the operator has declared that unpriced models cost nothing (e.g. a
  local model); the cost is 0 with basis `declared_zero`, which is not "unknown".
"""

from __future__ import annotations

import logging
from enum import StrEnum

from margin.errors import MarginError
from margin.metering.catalog import PriceCatalog
from margin.metering.pricing import price_usage
from margin.types import Cost, Usage

logger = logging.getLogger("margin.metering")


class UnknownPricePolicy(StrEnum):
    BLOCK = "block"
    ALERT = "alert"
    ZERO_BY_DECLARATION = "zero_by_declaration"


DEFAULT_UNKNOWN_PRICE_POLICY = UnknownPricePolicy.ALERT


class PriceUnknown(MarginError):
    """A model without a price under the `block` policy. Another deployment of the route may
    have a price, so the failover machinery may move on; retrying the same one cannot help."""

    status = 400
    type = "invalid_request_error"
    code = "model_price_unknown"
    failover = True

    def __init__(self, model: str) -> None:
        super().__init__(
            f"no price is configured for model {model!r} and the unknown-price policy is 'block'",
            param="model",
        )
        self.model = model


def check_price_known(
    catalog: PriceCatalog, model: str, *, provider: str | None = None, policy: UnknownPricePolicy
) -> None:
    """Pre-flight check: raises PriceUnknown when `model` has no price and the policy is block."""
    if policy is UnknownPricePolicy.BLOCK and catalog.lookup(model, provider) is None:
        raise PriceUnknown(model)


def cost_for_unknown_price(model: str, usage: Usage, policy: UnknownPricePolicy = DEFAULT_UNKNOWN_PRICE_POLICY) -> Cost:
    """The cost of usage on a model with no price, per `policy` (block raises PriceUnknown)."""
    estimated = usage.source == "estimated"
    if policy is UnknownPricePolicy.BLOCK:
        raise PriceUnknown(model)
    if policy is UnknownPricePolicy.ZERO_BY_DECLARATION:
        return Cost(model=model, basis="declared_zero", price_version="declared-zero", estimated_usage=estimated)
    logger.warning(
        "price unknown for model %r: %d tokens served and recorded at $0, flagged price_unknown",
        model,
        usage.total,
    )
    return Cost(model=model, basis="unknown", price_version="unknown", estimated_usage=estimated)


def cost_of(
    catalog: PriceCatalog,
    model: str,
    usage: Usage,
    *,
    provider: str | None = None,
    policy: UnknownPricePolicy = DEFAULT_UNKNOWN_PRICE_POLICY,
    batch: bool = False,
    cache_write_1h_tokens: int = 0,
) -> Cost:
    """The request path's one call: look the model up and price the usage, or apply `policy`."""
    price = catalog.lookup(model, provider)
    if price is None:
        return cost_for_unknown_price(model, usage, policy)
    return price_usage(usage, price, batch=batch, cache_write_1h_tokens=cache_write_1h_tokens)
