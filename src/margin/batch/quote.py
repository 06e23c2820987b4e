"""What a batch would cost before anything runs, on each deployment (tier) that may answer its lines.

Worst case: every line's prompt (estimated) at the deployment's dearest input bucket and its whole
output allowance (`max_tokens`, else `limits.default_max_output_tokens`, within the context window)
at the dearest output bucket: the figure budgets reserve. Expected: the prompt at the plain input
price and the output this deployment has really produced per request (the ledger's mean over the
last days), or `--expected-output-tokens`; with neither, no expected figure is made up. A deployment
without a price is reported as such, never as free."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from margin.budgets.estimate import WorstRates, max_output_tokens
from margin.config.model import DeploymentConfig, MarginConfig
from margin.metering.estimate import estimate_message_tokens, estimate_text_tokens
from margin.metering.pricebook import PriceBook
from margin.types import Usage


@dataclass(slots=True)
class TierQuote:
    deployment: str
    cost_rank: int | None
    priced: bool
    lines: int = 0
    input_tokens: int = 0
    worst_output_tokens: int = 0
    worst_usd: Decimal = Decimal(0)
    expected_usd: Decimal | None = Decimal(0)  # None: no history and no assumption given
    native: bool = False  # the batch would go to this deployment's provider Batch API, at its batch price


@dataclass(slots=True)
class Quote:
    tiers: dict[str, TierQuote] = field(default_factory=dict)
    lines: int = 0
    unroutable: dict[str, int] = field(default_factory=dict)  # model asked for -> lines no group serves


def prompt_tokens(body: Mapping[str, Any]) -> int:
    if isinstance(body.get("messages"), list):
        return estimate_message_tokens(body["messages"])
    source = body.get("prompt", body.get("input", ""))
    texts = source if isinstance(source, list) else [source]
    return sum(estimate_text_tokens(t) if isinstance(t, str) else len(t) if isinstance(t, list) else 1 for t in texts)


class Quoter:
    def __init__(self, config: MarginConfig, prices: PriceBook, *, mean_output: Mapping[str, float],
                 expected_output: int | None = None) -> None:  # fmt: skip
        self.config = config
        self.prices = prices
        self.rates = WorstRates(prices)
        self.mean_output = mean_output  # deployment -> output tokens per request, from the ledger
        self.expected_output = expected_output
        self.deployments = {d.name: d for d in config.deployments}
        self.groups = {name: g.deployments for g in config.models for name in (g.name, *g.aliases)}
        self.native = set(config.batch.native_deployments)

    def quote(self, lines: Iterable[Mapping[str, Any]]) -> Quote:
        result = Quote()
        first: set[str | None] = set()  # each line's first deployment (a batch goes native to one)
        for line in lines:
            body = line.get("body")
            if not isinstance(body, Mapping):
                continue
            result.lines += 1
            model = str(body.get("model", ""))
            group = self.groups.get(model) or self._deployment_group(model)
            first.add(group[0] if group else None)
            if group is None:
                result.unroutable[model] = result.unroutable.get(model, 0) + 1
                continue
            for name in group:
                self._add(result, self.deployments[name], body, embeddings=line.get("url") == "/v1/embeddings")
        if len(first) == 1:
            self._at_batch_price(result, first.pop())
        return result

    def _deployment_group(self, model: str) -> list[str] | None:
        return [model] if model in self.deployments else None  # a deployment asked for by its name

    def _at_batch_price(self, result: Quote, deployment: str | None) -> None:
        """Every line goes first to `deployment`: in `batch.native_deployments`, its provider's Batch
        API runs the batch, at the price times the catalog's batch multiplier (docs/batch.md)."""
        tier = result.tiers.get(deployment or "")
        price = self.prices.token_prices.get(deployment or "")
        if tier is None or deployment not in self.native or price is None or price.batch_multiplier is None:
            return
        tier.native = True
        tier.worst_usd *= price.batch_multiplier
        if tier.expected_usd is not None:
            tier.expected_usd *= price.batch_multiplier

    def _add(self, result: Quote, deployment: DeploymentConfig, body: Mapping[str, Any], *, embeddings: bool) -> None:
        name = deployment.name
        tier = result.tiers.get(name)
        if tier is None:
            tier = result.tiers[name] = TierQuote(name, deployment.cost_rank, self.prices.known(name))
        prompt = prompt_tokens(body)
        requested = body.get("max_completion_tokens", body.get("max_tokens"))
        n = body.get("n", 1)
        worst_out = 0 if embeddings else max_output_tokens(
            requested if isinstance(requested, int) else None, n if isinstance(n, int) else 1,
            self.config.limits.default_max_output_tokens, deployment.context_window, prompt,
        )  # fmt: skip
        tier.lines += 1
        tier.input_tokens += prompt
        tier.worst_output_tokens += worst_out
        tier.worst_usd += self.rates.cost(name, prompt, worst_out)
        expected_out = self._expected_output(name, worst_out)
        if expected_out is None or tier.expected_usd is None:
            tier.expected_usd = None
        else:
            usage = Usage(input_uncached=prompt, output=expected_out)
            tier.expected_usd += self.prices.cost(name, usage).total.usd if tier.priced else Decimal(0)

    def _expected_output(self, deployment: str, worst: int) -> int | None:
        if worst == 0:
            return 0
        per_request = self.expected_output if self.expected_output is not None else self.mean_output.get(deployment)
        return None if per_request is None else min(worst, round(per_request))
