"""price_usage rules, exactness, GPU-time pricing and the unknown-price policy."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from margin.errors import MarginError
from margin.metering import (
    BucketPrices,
    LongContextTier,
    ModelPrice,
    PriceUnknown,
    UnknownPricePolicy,
    amortized_price_per_million,
    check_price_known,
    cost_for_unknown_price,
    cost_of,
    load_builtin_catalog,
    price_gpu_time,
    price_usage,
    self_hosted_price,
)
from margin.types import Money, Usage

D = Decimal


def _price(**overrides: object) -> ModelPrice:
    fields: dict[str, object] = {
        "name": "m",
        "provider": "p",
        "prices": BucketPrices(input=D("3"), output=D("15"), cache_read=D("0.3"), cache_write=D("3.75")),
        "version": "test:1",
    }
    fields.update(overrides)
    return ModelPrice(**fields)  # type: ignore[arg-type]


def test_defaults_price_missing_buckets_on_the_safe_side() -> None:
    price = _price(prices=BucketPrices(input=D("2"), output=D("8")))
    usage = Usage(input_uncached=1, input_cache_read=1, input_cache_write=1, output=1, output_reasoning=1)
    cost = price_usage(usage, price)
    # No cache discount declared: cache reads and writes at the input rate; reasoning at output.
    assert cost.buckets()["input_cache_read"] == D("0.000002")
    assert cost.buckets()["input_cache_write"] == D("0.000002")
    assert cost.output_reasoning == D("0.000008")
    assert not cost.assumed_modality_price


def test_audio_without_a_declared_price_is_flagged() -> None:
    cost = price_usage(Usage(input_audio=1_000_000), _price())
    assert cost.input_audio == D("3")
    assert cost.assumed_modality_price
    declared = price_usage(
        Usage(input_audio=1_000_000), _price(prices=BucketPrices(D("3"), D("15"), input_audio=D("40")))
    )
    assert declared.input_audio == D("40") and not declared.assumed_modality_price


def test_cost_is_exact_for_prices_with_many_decimals() -> None:
    price = _price(prices=BucketPrices(input=D("0.000000000123"), output=D("123456.789012345")))
    cost = price_usage(Usage(input_uncached=999_999_999_999, output=987_654_321), price)
    assert cost.input_uncached == D("999999999999") * D("0.000000000123") / D(10**6)
    assert cost.output == D("987654321") * D("123456.789012345") / D(10**6)
    assert cost.total == Money(cost.input_uncached + cost.output)


def test_long_context_tier_prices_every_bucket_once_threshold_is_exceeded() -> None:
    tier = LongContextTier(200_000, BucketPrices(input=D("6"), output=D("22.5"), cache_read=D("0.6")))
    price = _price(long_context=(tier,))
    below = price_usage(Usage(input_uncached=150_000, input_cache_read=50_000, output=1_000), price)
    above = price_usage(Usage(input_uncached=150_000, input_cache_read=50_001, output=1_000), price)
    assert not below.long_context and below.output == D("0.015")
    assert above.long_context and above.output == D("0.0225") and above.input_cache_read == D("0.0300006")


def test_highest_exceeded_tier_wins() -> None:
    tiers = (
        LongContextTier(100, BucketPrices(input=D("10"), output=D("10"))),
        LongContextTier(1_000, BucketPrices(input=D("20"), output=D("20"))),
    )
    price = _price(long_context=tiers)
    assert price_usage(Usage(input_uncached=500), price).input_uncached == D("0.005")
    assert price_usage(Usage(input_uncached=5_000), price).input_uncached == D("0.1")


def test_batch_discount_applies_only_when_declared() -> None:
    usage = Usage(input_uncached=1_000_000, output=1_000_000)
    discounted = price_usage(usage, _price(batch_multiplier=D("0.5")), batch=True)
    assert discounted.batch and discounted.total == Money(D("9"))
    undeclared = price_usage(usage, _price(), batch=True)
    assert not undeclared.batch and undeclared.total == Money(D("18"))


def test_one_hour_cache_writes_use_their_own_rate_and_are_capped() -> None:
    price = _price(prices=BucketPrices(D("3"), D("15"), cache_write=D("3.75"), cache_write_1h=D("6")))
    cost = price_usage(Usage(input_cache_write=1_000_000), price, cache_write_1h_tokens=250_000)
    assert cost.input_cache_write == D("2.8125") + D("1.5")
    capped = price_usage(Usage(input_cache_write=10), price, cache_write_1h_tokens=10_000)
    assert capped.input_cache_write == D("0.00006")


def test_cost_records_version_model_and_estimated_usage() -> None:
    cost = price_usage(Usage(input_uncached=4, source="estimated"), _price())
    assert (cost.price_version, cost.model, cost.basis) == ("test:1", "m", "catalog")
    assert cost.estimated_usage and not cost.price_unknown


def test_money_micro_usd_of_a_cost() -> None:
    cost = price_usage(Usage(input_uncached=1_000_000, output=333), _price())
    assert cost.total.usd == D("3.004995")
    assert cost.total.micro_usd == 3_004_995


def test_gpu_time_cost_is_rounded_to_a_pico_dollar() -> None:
    cost = price_gpu_time(D("1.5"), "2.49")
    assert cost.gpu_time == D("0.001037500000")
    assert cost.total == Money(D("0.0010375"))
    assert cost.basis == "gpu_time" and cost.price_version == "gpu-time:2.49/gpu-hour"
    thirds = price_gpu_time(1, "1", gpus=2)
    assert thirds.gpu_time == D("0.000555555556")  # 2/3600 rounded half-even


@pytest.mark.parametrize(("seconds", "hourly", "gpus"), [(-1, "1", 1), (1, "-2", 1), (1, "1", 0), ("x", "1", 1)])
def test_gpu_time_rejects_bad_configuration(seconds: object, hourly: str, gpus: int) -> None:
    with pytest.raises(ValueError):
        price_gpu_time(seconds, hourly, gpus)  # type: ignore[arg-type]


def test_amortized_price_matches_gpu_time_for_the_same_work() -> None:
    # 2 H100s at $2.50/h each, decoding 1,000 tokens/s: $5/h / 3.6M tokens/h = $1.3888... per 1M.
    per_million = amortized_price_per_million("2.50", 1000, gpus=2)
    assert per_million == D("1.388888888889")
    with pytest.raises(ValueError):
        amortized_price_per_million("2.50", 0)
    price = self_hosted_price(
        "llama-70b", "2.50", input_tokens_per_second=10_000, output_tokens_per_second=1_000, gpus=2
    )
    assert price.prices.input == D("0.138888888889") and price.prices.output == per_million
    assert price.provider == "self-hosted" and "gpu-amortized" in price.version


def test_unknown_price_under_alert_is_flagged_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="margin.metering"):
        cost = cost_for_unknown_price("mystery-model", Usage(input_uncached=10, output=5))
    assert cost.price_unknown and cost.basis == "unknown"
    assert cost.total == Money(D(0)) and cost.model == "mystery-model"
    assert "mystery-model" in caplog.text and "price_unknown" in caplog.text


def test_unknown_price_under_zero_by_declaration_is_not_unknown() -> None:
    cost = cost_for_unknown_price("local", Usage(output=5), UnknownPricePolicy.ZERO_BY_DECLARATION)
    assert not cost.price_unknown and cost.basis == "declared_zero" and cost.total.usd == 0


def test_unknown_price_under_block_raises_a_margin_error() -> None:
    with pytest.raises(PriceUnknown) as raised:
        cost_for_unknown_price("mystery-model", Usage(), UnknownPricePolicy.BLOCK)
    error = raised.value
    assert isinstance(error, MarginError)
    assert error.status == 400 and error.error_code == "model_price_unknown" and error.failover
    assert error.to_openai()["error"]["param"] == "model"


def test_check_price_known_is_a_preflight_for_block_only() -> None:
    catalog = load_builtin_catalog()
    check_price_known(catalog, "gpt-4o", policy=UnknownPricePolicy.BLOCK)
    check_price_known(catalog, "mystery", policy=UnknownPricePolicy.ALERT)
    with pytest.raises(PriceUnknown):
        check_price_known(catalog, "mystery", policy=UnknownPricePolicy.BLOCK)


def test_cost_of_prices_known_models_and_defaults_to_alert() -> None:
    catalog = load_builtin_catalog()
    known = cost_of(catalog, "gpt-4o-mini", Usage(input_uncached=1_000_000))
    assert known.total == Money(D("0.15")) and known.basis == "catalog"
    unknown = cost_of(catalog, "mystery", Usage(input_uncached=1_000_000))
    assert unknown.price_unknown
    assert UnknownPricePolicy("zero_by_declaration") is UnknownPricePolicy.ZERO_BY_DECLARATION
