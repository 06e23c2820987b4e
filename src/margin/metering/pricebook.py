"""Each deployment's price, resolved once at start-up, and the cost of one attempt.

Order of precedence: the deployment's own `price` or `gpu_price` in the config, then the price
catalog entry for its upstream model (builtin < user catalog < config `metering.prices`), then the
unknown-price policy. Nothing is looked up per request.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from margin.config.model import DeploymentConfig, GpuHourPrice
from margin.metering.catalog import PriceCatalog
from margin.metering.price_model import BucketPrices, ModelPrice
from margin.metering.pricing import price_gpu_time, price_usage
from margin.metering.unknown import PriceUnknown, UnknownPricePolicy, cost_for_unknown_price
from margin.types import Cost, Usage

_PROVIDER_HINT = {
    "openai_compat": None,
    "anthropic": "anthropic",
    "local": "self-hosted",
    "local_embed": "self-hosted",
    "fake": None,
}


def _config_price(deployment: DeploymentConfig) -> ModelPrice | None:
    price = deployment.price
    if price is None:
        return None
    buckets = BucketPrices(
        input=price.input,
        output=price.output,
        cache_read=price.cache_read,
        cache_write=price.cache_write,
        reasoning=price.reasoning,
    )
    version = f"config:{deployment.name}:{price.input}/{price.output}"
    return ModelPrice(
        name=deployment.model,
        provider="config",
        prices=buckets,
        version=version,
        origin="config",
        source="margin config",
    )


class PriceBook:
    def __init__(
        self, deployments: Iterable[DeploymentConfig], catalog: PriceCatalog, policy: UnknownPricePolicy
    ) -> None:
        self.policy = policy
        self.token_prices: dict[str, ModelPrice] = {}
        self.gpu_prices: dict[str, GpuHourPrice] = {}
        self.models: dict[str, str] = {}
        for deployment in deployments:
            self.models[deployment.name] = deployment.model
            if deployment.gpu_price is not None:
                self.gpu_prices[deployment.name] = deployment.gpu_price
                continue
            price = _config_price(deployment) or catalog.lookup(
                deployment.model, _PROVIDER_HINT.get(deployment.provider)
            )
            if price is not None:
                self.token_prices[deployment.name] = price

    def known(self, deployment: str) -> bool:
        return deployment in self.token_prices or deployment in self.gpu_prices

    def check(self, deployment: str) -> None:
        """Pre-flight: under the `block` policy a deployment without a price is never called."""
        if self.policy is UnknownPricePolicy.BLOCK and not self.known(deployment):
            raise PriceUnknown(self.models.get(deployment, deployment))

    def cost(self, deployment: str, usage: Usage, *, gpu_seconds: float = 0.0, batch: bool = False) -> Cost:
        price = self.token_prices.get(deployment)
        if price is not None:
            return price_usage(usage, price, batch=batch)
        gpu = self.gpu_prices.get(deployment)
        if gpu is not None:
            return price_gpu_time(Decimal(repr(gpu_seconds)), gpu.usd_per_gpu_hour, gpu.gpus)
        return cost_for_unknown_price(self.models.get(deployment, deployment), usage, self.policy)
