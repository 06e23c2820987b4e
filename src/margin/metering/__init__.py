"""Metering: provider usage -> `Usage` -> exact `Cost`, against a versioned price catalog.

The request path needs four calls (see docs/pricing.md):

    catalog = load_catalog(user_file=default_user_catalog_path(), overrides=config_overrides)
    check_price_known(catalog, model, provider=..., policy=policy)        # before the upstream call
    usage = usage_from_payload(body, "openai")                            # or the dialect's function
    cost = cost_of(catalog, model, usage, provider=..., policy=policy, batch=...)

Importing this package does no I/O: the catalog is read when `load_catalog` is called.
"""

from margin.metering.catalog import (
    PriceCatalog,
    PriceMatch,
    default_user_catalog_path,
    load_builtin_catalog,
    load_catalog,
    load_catalog_file,
)
from margin.metering.estimate import estimate_message_tokens, estimate_text_tokens, estimate_tokens
from margin.metering.price_model import BucketPrices, LongContextTier, ModelPrice
from margin.metering.pricing import (
    amortized_price_per_million,
    price_gpu_time,
    price_usage,
    self_hosted_price,
)
from margin.metering.unknown import (
    DEFAULT_UNKNOWN_PRICE_POLICY,
    PriceUnknown,
    UnknownPricePolicy,
    check_price_known,
    cost_for_unknown_price,
    cost_of,
)
from margin.metering.usage import (
    ServerTimings,
    UsageDialect,
    gemini_usage,
    llamacpp_native_usage,
    llamacpp_timings,
    llamacpp_usage,
    ollama_timings,
    ollama_usage,
    openai_responses_usage,
    openai_usage,
    usage_from_payload,
    vllm_usage,
)
from margin.metering.usage_anthropic import (
    AnthropicStreamUsage,
    anthropic_cache_write_1h,
    anthropic_stream_usage,
    anthropic_usage,
)
from margin.types import Cost

__all__ = [
    "DEFAULT_UNKNOWN_PRICE_POLICY",
    "AnthropicStreamUsage",
    "BucketPrices",
    "Cost",
    "LongContextTier",
    "ModelPrice",
    "PriceCatalog",
    "PriceMatch",
    "PriceUnknown",
    "ServerTimings",
    "UnknownPricePolicy",
    "UsageDialect",
    "amortized_price_per_million",
    "anthropic_cache_write_1h",
    "anthropic_stream_usage",
    "anthropic_usage",
    "check_price_known",
    "cost_for_unknown_price",
    "cost_of",
    "default_user_catalog_path",
    "estimate_message_tokens",
    "estimate_text_tokens",
    "estimate_tokens",
    "gemini_usage",
    "llamacpp_native_usage",
    "llamacpp_timings",
    "llamacpp_usage",
    "load_builtin_catalog",
    "load_catalog",
    "load_catalog_file",
    "ollama_timings",
    "ollama_usage",
    "openai_responses_usage",
    "openai_usage",
    "price_gpu_time",
    "price_usage",
    "self_hosted_price",
    "usage_from_payload",
    "vllm_usage",
]
