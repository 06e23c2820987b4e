"""Usage x price -> an exact Cost, and GPU-time pricing for self-hosted deployments.

All arithmetic is Decimal in a local context with 60 digits of precision, so that no product
or sum of the sizes metering sees is ever rounded: tokens are integers below 10**12 and prices
have at most a dozen significant digits. The only division is by the 3,600 seconds of a GPU
hour, which is rounded half-even to 1e-12 USD (a millionth of a micro-dollar) and documented.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import TypedDict

from margin.metering._numbers import parse_usd, plain
from margin.metering.price_model import BucketPrices, ModelPrice
from margin.types import MONEY_PRECISION, Cost, Usage

GPU_TIME_QUANTUM = Decimal("1e-12")
_ZERO = Decimal(0)
_SECONDS_PER_HOUR = Decimal(3600)


def _amount(tokens: int, usd_per_million: Decimal) -> Decimal:
    # scaleb shifts the exponent: an exact division by 10**6.
    return (Decimal(tokens) * usd_per_million).scaleb(-6) if tokens else _ZERO


def _cache_write_amount(tokens: int, one_hour: int, prices: BucketPrices) -> Decimal:
    five_minute_rate = prices.effective_cache_write
    one_hour_rate = five_minute_rate if prices.cache_write_1h is None else prices.cache_write_1h
    one_hour = min(max(one_hour, 0), tokens)
    return _amount(tokens - one_hour, five_minute_rate) + _amount(one_hour, one_hour_rate)


def _modality_assumed(usage: Usage, prices: BucketPrices) -> bool:
    return bool(
        (usage.input_audio and prices.input_audio is None)
        or (usage.output_audio and prices.output_audio is None)
        or (usage.input_image and prices.input_image is None)
    )


def _or(value: Decimal | None, fallback: Decimal) -> Decimal:
    return fallback if value is None else value


class _Amounts(TypedDict):
    input_uncached: Decimal
    input_cache_read: Decimal
    input_cache_write: Decimal
    output: Decimal
    output_reasoning: Decimal
    input_audio: Decimal
    output_audio: Decimal
    input_image: Decimal


def _bucket_amounts(usage: Usage, prices: BucketPrices, cache_write_1h_tokens: int) -> _Amounts:
    return _Amounts(
        input_uncached=_amount(usage.input_uncached, prices.input),
        input_cache_read=_amount(usage.input_cache_read, _or(prices.cache_read, prices.input)),
        input_cache_write=_cache_write_amount(usage.input_cache_write, cache_write_1h_tokens, prices),
        output=_amount(usage.output, prices.output),
        output_reasoning=_amount(usage.output_reasoning, _or(prices.reasoning, prices.output)),
        input_audio=_amount(usage.input_audio, _or(prices.input_audio, prices.input)),
        output_audio=_amount(usage.output_audio, _or(prices.output_audio, prices.output)),
        input_image=_amount(usage.input_image, _or(prices.input_image, prices.input)),
    )


def _scaled(amounts: _Amounts, factor: Decimal) -> _Amounts:
    return _Amounts(
        input_uncached=amounts["input_uncached"] * factor,
        input_cache_read=amounts["input_cache_read"] * factor,
        input_cache_write=amounts["input_cache_write"] * factor,
        output=amounts["output"] * factor,
        output_reasoning=amounts["output_reasoning"] * factor,
        input_audio=amounts["input_audio"] * factor,
        output_audio=amounts["output_audio"] * factor,
        input_image=amounts["input_image"] * factor,
    )


def price_usage(usage: Usage, price: ModelPrice, *, batch: bool = False, cache_write_1h_tokens: int = 0) -> Cost:
    """The cost of `usage` at `price`.

    Long context: when the prompt (`usage.input_total`, cache reads and writes included) exceeds
    a tier's threshold, every bucket of the request is priced at that tier, as Anthropic and
    Google bill it. Batch: when `batch` is true and the entry declares a batch multiplier, every
    bucket is multiplied by it (OpenAI and Anthropic: 0.5; it stacks with cache prices); an entry
    without one is priced at the standard rate. `cache_write_1h_tokens` of the cache writes are
    priced at the 1-hour rate (see `anthropic_cache_write_1h`).
    """
    tier = price.tier_for(usage.input_total)
    prices = tier.prices if tier is not None else price.prices
    factor = price.batch_multiplier if batch else None
    with localcontext(prec=MONEY_PRECISION):
        amounts = _bucket_amounts(usage, prices, cache_write_1h_tokens)
        if factor is not None:
            amounts = _scaled(amounts, factor)
        return Cost(
            **amounts,
            price_version=price.version,
            model=price.name,
            long_context=tier is not None,
            batch=factor is not None,
            estimated_usage=usage.source == "estimated",
            assumed_modality_price=_modality_assumed(usage, prices),
        )


def price_gpu_time(
    gpu_seconds: Decimal | int | float | str,
    usd_per_gpu_hour: Decimal | int | float | str,
    gpus: int = 1,
    *,
    model: str = "",
    price_version: str | None = None,
) -> Cost:
    """Cost of a request that occupied `gpus` GPUs for `gpu_seconds` at `usd_per_gpu_hour` each.

    Rounded half-even to 1e-12 USD: a GPU-hour price divided by 3,600 is not always a finite
    decimal. Raises ValueError on negative or non-numeric arguments (configuration, not usage).
    """
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be a positive integer, got {gpus!r}")
    seconds = parse_usd(gpu_seconds, what="gpu_seconds")
    hourly = parse_usd(usd_per_gpu_hour, what="usd_per_gpu_hour")
    with localcontext(prec=MONEY_PRECISION):
        amount = (seconds * gpus * hourly / _SECONDS_PER_HOUR).quantize(GPU_TIME_QUANTUM, ROUND_HALF_EVEN)
    version = price_version or f"gpu-time:{plain(hourly)}/gpu-hour"
    return Cost(gpu_time=amount, price_version=version, model=model, basis="gpu_time")


def amortized_price_per_million(
    usd_per_gpu_hour: Decimal | int | float | str,
    tokens_per_second: Decimal | int | float | str,
    gpus: int = 1,
) -> Decimal:
    """The per-million-token price equivalent to a GPU-hour price at a measured throughput.

    usd_per_gpu_hour x gpus / (tokens_per_second x 3600) x 10**6, rounded half-even to 1e-12
    USD per million tokens. `tokens_per_second` is what the deployment sustains (all GPUs
    together), e.g. decode tokens/s for output and prefill tokens/s for input.
    """
    hourly = parse_usd(usd_per_gpu_hour, what="usd_per_gpu_hour")
    throughput = parse_usd(tokens_per_second, what="tokens_per_second")
    if throughput == 0:
        raise ValueError("tokens_per_second must be greater than zero")
    with localcontext(prec=MONEY_PRECISION):
        per_million = hourly * gpus * Decimal(10**6) / (throughput * _SECONDS_PER_HOUR)
        return per_million.quantize(GPU_TIME_QUANTUM, ROUND_HALF_EVEN).normalize()


def self_hosted_price(
    name: str,
    usd_per_gpu_hour: Decimal | int | float | str,
    *,
    input_tokens_per_second: Decimal | int | float | str,
    output_tokens_per_second: Decimal | int | float | str,
    gpus: int = 1,
) -> ModelPrice:
    """A per-token price for a self-hosted deployment, amortised over its measured throughput,
    so that self-hosted and API tiers compare in one currency."""
    prices = BucketPrices(
        input=amortized_price_per_million(usd_per_gpu_hour, input_tokens_per_second, gpus),
        output=amortized_price_per_million(usd_per_gpu_hour, output_tokens_per_second, gpus),
    )
    version = (
        f"gpu-amortized:{usd_per_gpu_hour}/gpu-hour x{gpus}@{input_tokens_per_second}/{output_tokens_per_second}tok/s"
    )
    return ModelPrice(
        name=name,
        provider="self-hosted",
        prices=prices,
        source="measured throughput",
        version=version,
        origin="config",
    )
