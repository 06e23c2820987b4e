"""How a batch line becomes a pipeline call: the same body validation and request building as the
live endpoints (api/openai.py, api/anthropic.py), without HTTP. The batch worker gets this object
from the composition root (margin.batch.runner.LineExecutor), so batch/ never imports the web layer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from margin.api.batch_budget import NativeBudget
from margin.api.body import validate
from margin.api.openai import chat_request
from margin.api.schemas import ChatCompletionBody, CompletionBody, EmbeddingBody
from margin.batch.backoff import tier_load_from
from margin.batch.native import NativeBatchAPI
from margin.batch.runner import ENDPOINTS, batch_principal
from margin.config.model import DeploymentConfig
from margin.errors import ConfigError, InvalidRequest, ModelNotFound
from margin.pipeline.context import RequestContext
from margin.pipeline.handler import Pipeline
from margin.pipeline.record import RequestRecord
from margin.providers.batch_api import AnthropicBatchAPI, OpenAIBatchAPI
from margin.storage.batches import BatchRecord, LineResult
from margin.translate import chat_result_to_message, parse_messages_request
from margin.types import Attempt, AttemptStatus, ChatRequest, Cost, EmbeddingRequest, Usage

_SCHEMAS: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionBody,
    "/v1/completions": CompletionBody,
    "/v1/embeddings": EmbeddingBody,
}


class PipelineLines:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.budget = NativeBudget(pipeline, line_request)

    def check(self, endpoint: str, body: dict[str, Any]) -> tuple[str, str | None] | None:
        """Why `body` would be refused by `endpoint` (message, param), or None."""
        if body.get("stream"):
            return "stream is not available in a batch (each line's answer is returned whole).", "stream"
        try:
            if endpoint == "/v1/messages":
                parse_messages_request(body)
            else:
                validate(_SCHEMAS[endpoint], body)
        except InvalidRequest as exc:
            return exc.message, exc.param
        return None

    def tier_of(self, body: dict[str, Any]) -> tuple[str, ...]:
        """The deployments of the line's model group (its first choice), sorted; () if unknown."""
        model = body.get("model")
        if not isinstance(model, str):
            return ()
        try:
            return tuple(sorted(self.pipeline.table.resolve(model).deployments))
        except ModelNotFound:
            return ()

    def tier_load(self, tier: tuple[str, ...]) -> int:
        """Upstream calls open now on the tier's deployments (the whole replica's for ())."""
        return tier_load_from(self.pipeline.caller.in_flight)(tier)

    # --- native batches (margin.batch.native_run.NativeBackend) -------------------------------------------
    def native_apis(self, deployments: list[str]) -> dict[str, NativeBatchAPI]:
        """A Batch API client per deployment; a deployment that is not an OpenAI or Anthropic one is
        a ConfigError (it has no Batch API margin can use)."""
        apis: dict[str, NativeBatchAPI] = {}
        for name in deployments:
            config = getattr(self.pipeline.caller.providers.get(name), "deployment", None)
            if not isinstance(config, DeploymentConfig) or config.provider not in ("openai_compat", "anthropic"):
                raise ConfigError(f"batch.native_deployments: {name} is not an OpenAI or Anthropic deployment")
            key = config.api_key.resolve() if config.api_key is not None else None
            if config.provider == "anthropic":
                apis[name] = AnthropicBatchAPI(config.base_url or "https://api.anthropic.com", key)
            else:
                apis[name] = OpenAIBatchAPI(config.base_url or "https://api.openai.com/v1", key)
        return apis

    def deployment_of(self, model: str) -> str | None:
        try:
            deployments = self.pipeline.table.resolve(model).deployments
        except ModelNotFound:
            return None
        return deployments[0] if deployments else None

    def upstream_model(self, deployment: str) -> str:
        return str(self.pipeline.meter.prices.models.get(deployment, deployment))

    def batch_price(self, deployment: str, usage: Usage) -> Cost:
        return self.pipeline.meter.prices.cost(deployment, usage, batch=True)

    def record_native(self, batch: BatchRecord, deployment: str, result: LineResult, usage: Usage | None) -> None:
        """The line's ledger row, as one attempt of a request of the batch's creator (tagged with it)."""
        ctx = RequestContext(request_id=result.request_id, endpoint=ENDPOINTS[batch.endpoint])
        ctx.principal = batch_principal(batch)
        ctx.authenticated = True
        model = self.upstream_model(deployment)
        cost = self.batch_price(deployment, usage) if usage is not None else None
        status: AttemptStatus = "ok" if result.outcome == "completed" else "error"
        ctx.attempts.append(Attempt(request_id=result.request_id, index=0, deployment=deployment, model=model,
                                    status=status, usage=usage, started_at=ctx.started, cost=cost))  # fmt: skip
        ctx.deployment, ctx.model, ctx.usage, ctx.cost = deployment, model, usage, cost
        record_status = "ok" if status == "ok" else "UpstreamError"
        self.pipeline.recorder.submit(RequestRecord(ctx, record_status, usage, 0.0, None, 0.0))

    async def reserve_native(
        self, batch: BatchRecord, deployment: str, bodies: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        return await self.budget.reserve(batch, deployment, bodies)

    def settle_native(self, hold: dict[str, Any], cost: Decimal, tokens: int) -> None:
        self.budget.settle(hold, cost, tokens)

    async def run(self, ctx: RequestContext, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        if endpoint == "/v1/embeddings":
            result = await self.pipeline.embed(ctx, embedding_request(body))
            return result.body
        if endpoint == "/v1/messages":
            chat = parse_messages_request(body)
            answer = await self.pipeline.chat(ctx, chat)
            return chat_result_to_message(answer, model=answer.model)
        kind = "completion" if endpoint == "/v1/completions" else "chat"
        return (await self.pipeline.chat(ctx, chat_request(body, kind=kind))).body


def line_request(endpoint: str, body: dict[str, Any]) -> ChatRequest | EmbeddingRequest:
    """The request the live endpoint builds from a line's body."""
    if endpoint == "/v1/embeddings":
        return embedding_request(body)
    if endpoint == "/v1/messages":
        return parse_messages_request(body)
    return chat_request(body, kind="completion" if endpoint == "/v1/completions" else "chat")


def embedding_request(raw: dict[str, Any]) -> EmbeddingRequest:
    """As `POST /v1/embeddings` builds it: one input becomes a list of one."""
    inputs = raw["input"]
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    return EmbeddingRequest(
        model=raw["model"], inputs=inputs, params={k: v for k, v in raw.items() if k not in ("model", "input")}
    )
