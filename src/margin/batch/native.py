"""`native` batches, the batch side: when every line of a batch goes to one hosted deployment that
takes batches itself (OpenAI's Files + Batches, Anthropic's Message Batches), the batch can be handed
to that provider's Batch API, billed at its batch price, and its answers mapped back to margin's
output lines. The HTTP clients live with the providers (margin.providers.batch_api) and reach this
module through `NativeBatchAPI`, so batch/ never imports an HTTP client.

What is here: which deployment a batch may go to natively, the lines as the provider must receive
them (its own model name), and each answer as margin's output line with its cost at the price
catalog's batch multiplier (a line the provider did not answer costs nothing). The worker's wiring
(submitting at validation, durable polling, cancellation, ledger rows) is not built yet: see
docs/batch.md."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal, Protocol

import orjson

from margin.batch.ids import new_line_id
from margin.metering.usage import openai_usage
from margin.metering.usage_anthropic import anthropic_usage
from margin.storage.batches import LineResult, NativeAnswer, NativeProgress
from margin.types import Cost, Usage

Provider = Literal["openai", "anthropic"]
# The endpoints each provider's Batch API runs (margin's OpenAI-shaped endpoints, or /v1/messages).
NATIVE_ENDPOINTS: dict[str, frozenset[str]] = {
    "openai": frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}),
    "anthropic": frozenset({"/v1/messages"}),
}


class NativeBatchAPI(Protocol):
    @property
    def provider(self) -> Provider: ...

    async def submit(self, endpoint: str, lines: list[tuple[str, dict[str, Any]]], tag: str) -> str:
        """Hand the lines (custom_id, body) to the provider, labelled `tag` where its API keeps a
        label (OpenAI's metadata); its batch id."""

    async def find(self, tag: str) -> str | None:
        """The provider's batch labelled `tag` (one submitted before a crash), or None (also where
        the API keeps no label: Anthropic)."""

    async def progress(self, native_id: str) -> NativeProgress: ...

    def answers(self, native_id: str) -> AsyncIterator[NativeAnswer]:
        """Every line of an ended batch, each once (answered or not)."""

    async def cancel(self, native_id: str) -> None: ...

    async def aclose(self) -> None:
        """Close its connections (the batch tier stops)."""


def native_deployment(
    endpoint: str, models: Iterable[str], deployment_of: Callable[[str], str | None],
    apis: Mapping[str, NativeBatchAPI],
) -> str | None:  # fmt: skip
    """The deployment every line's model goes to when it takes native batches of `endpoint`, else
    None (lines for two deployments, an unknown model, a deployment without a Batch API, or an
    endpoint its provider's Batch API does not run: the batch runs `local`)."""
    chosen: set[str | None] = {deployment_of(model) for model in set(models)}
    if len(chosen) != 1:
        return None
    (deployment,) = chosen
    api = apis.get(deployment) if deployment is not None else None
    if api is None or endpoint not in NATIVE_ENDPOINTS[api.provider]:
        return None
    return deployment


def upstream_lines(lines: Iterable[tuple[str, dict[str, Any]]], model: str) -> list[tuple[str, dict[str, Any]]]:
    """The lines as the provider receives them: each body names the provider's own model."""
    return [(custom_id, {**body, "model": model}) for custom_id, body in lines]


def usage_of(provider: Provider, body: Mapping[str, Any]) -> Usage | None:
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        return None
    return anthropic_usage(usage) if provider == "anthropic" else openai_usage(usage)


def native_result(
    answer: NativeAnswer, line_no: int, *, provider: Provider, request_id: str, finished_at: float,
    price: Callable[[Usage], Cost],
) -> LineResult:  # fmt: skip
    """The line's output (or error) file line and its cost: a 2xx answer at `price` (the deployment's
    batch price), anything else nothing (providers do not bill a batch line that failed)."""
    ran = answer.status_code is not None
    response = {"status_code": answer.status_code, "request_id": request_id, "body": answer.body} if ran else None
    line = {"id": new_line_id(), "custom_id": answer.custom_id, "response": response,
            "error": None if ran else answer.error}  # fmt: skip
    succeeded = answer.status_code is not None and answer.status_code < 400
    usage = usage_of(provider, answer.body or {}) if succeeded else None
    cost = price(usage).total.usd if usage is not None else Decimal(0)
    return LineResult(
        line_no=line_no,
        outcome="completed" if succeeded else "failed",
        result=orjson.dumps(line).decode(),
        request_id=request_id,
        finished_at=finished_at,
        input_tokens=usage.input_total if usage is not None else 0,
        output_tokens=usage.output_total if usage is not None else 0,
        cost=cost,
    )
