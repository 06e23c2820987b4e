"""Reservation math: the worst case a request may cost before it is sent.

    worst cost = max over the deployments the route may try of
                 input tokens (estimated for that deployment) x its dearest input price
               + max output tokens x its dearest output price

"Dearest": cache writes may cost more than plain input and reasoning more than output, so both
shapes are priced and the larger taken (long-context tiers are applied by the price book). Max
output tokens is the request's max_tokens / max_completion_tokens (x n choices) or, when it sets
none, `limits.default_max_output_tokens`, capped by the deployment's context window. Deployments
priced by GPU time or with no known price reserve 0 money: give them token budgets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal, localcontext

from margin.budgets.rules import NANO
from margin.metering.price_model import BucketPrices
from margin.metering.pricebook import PriceBook
from margin.types import Usage

_MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Demand:
    """What one request may use at most: nano-USD and tokens."""

    cost_nano: int
    tokens: int


def nano_ceil(usd: Decimal) -> int:
    """Round up: a counter never under-counts what the ledger records."""
    return int((usd * NANO).to_integral_value(rounding=ROUND_CEILING))


def max_output_tokens(requested: int | None, n: int, default: int, context_window: int | None, prompt: int) -> int:
    if requested is not None:
        return max(0, requested) * max(1, n)
    cap = default if context_window is None else max(0, min(default, context_window - prompt))
    return cap * max(1, n)


def largest_fitting(needs: Callable[[int], int], room: int, upper: int) -> int | None:
    """The largest max_tokens in [1, upper] whose worst case `needs(max_tokens)` is within `room`,
    or None when not even 1 fits. `needs` grows with max_tokens, so a binary search finds it."""
    if upper < 1 or needs(1) > room:
        return None
    low, high = 1, upper  # needs(low) fits; find the last that does
    while low < high:
        middle = (low + high + 1) // 2
        if needs(middle) <= room:
            low = middle
        else:
            high = middle - 1
    return low


class WorstRates:
    """USD per token at each deployment's dearest input and output buckets, per long-context tier,
    worked out once: a request's worst case is then two exact multiplications."""

    def __init__(self, prices: PriceBook) -> None:
        self.prices = prices
        self._rates: dict[tuple[str, int], tuple[Decimal, Decimal]] = {}

    def cost(self, deployment: str, input_tokens: int, output_tokens: int) -> Decimal:
        price = self.prices.token_prices.get(deployment)
        if price is None:
            return Decimal(0)
        tier = price.tier_for(input_tokens)
        key = (deployment, -1 if tier is None else tier.above_input_tokens)
        rates = self._rates.get(key)
        if rates is None:
            rates = self._rates[key] = _dearest(tier.prices if tier is not None else price.prices)
        with localcontext(prec=60):
            return input_tokens * rates[0] + output_tokens * rates[1]


def _dearest(prices: BucketPrices) -> tuple[Decimal, Decimal]:
    inputs = [prices.input, prices.effective_cache_write, prices.cache_write_1h or prices.input]
    outputs = [prices.output, prices.reasoning if prices.reasoning is not None else prices.output]
    return max(inputs) / _MILLION, max(outputs) / _MILLION


def worst_cost(prices: PriceBook, deployment: str, input_tokens: int, output_tokens: int) -> Decimal:
    """The same figure through the price book's own pricing (the reference WorstRates is tested against)."""
    if deployment not in prices.token_prices:
        return Decimal(0)
    plain = prices.cost(deployment, Usage(input_uncached=input_tokens, output=output_tokens)).total.usd
    dear = prices.cost(deployment, Usage(input_cache_write=input_tokens, output_reasoning=output_tokens)).total.usd
    return max(plain, dear)


def demand_of(
    prices: WorstRates,
    deployments: Iterable[str],
    *,
    prompt_tokens: Callable[[str], int],
    output_tokens: Callable[[str, int], int],
) -> Demand:
    """The worst case over every deployment the route may try."""
    cost = Decimal(0)
    tokens = 0
    for name in deployments:
        prompt = prompt_tokens(name)
        out = output_tokens(name, prompt)
        cost = max(cost, prices.cost(name, prompt, out))
        tokens = max(tokens, prompt + out)
    return Demand(cost_nano=nano_ceil(cost), tokens=tokens)
