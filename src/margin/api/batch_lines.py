"""How a batch line becomes a pipeline call: the same body validation and request building as the
live endpoints (api/openai.py, api/anthropic.py), without HTTP. The batch worker gets this object
from the composition root (margin.batch.runner.LineExecutor), so batch/ never imports the web layer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from margin.api.body import validate
from margin.api.openai import chat_request
from margin.api.schemas import ChatCompletionBody, CompletionBody, EmbeddingBody
from margin.batch.backoff import tier_load_from
from margin.errors import InvalidRequest, ModelNotFound
from margin.pipeline.context import RequestContext
from margin.pipeline.handler import Pipeline
from margin.translate import chat_result_to_message, parse_messages_request
from margin.types import EmbeddingRequest

_SCHEMAS: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionBody,
    "/v1/completions": CompletionBody,
    "/v1/embeddings": EmbeddingBody,
}


class PipelineLines:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

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


def embedding_request(raw: dict[str, Any]) -> EmbeddingRequest:
    """As `POST /v1/embeddings` builds it: one input becomes a list of one."""
    inputs = raw["input"]
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    return EmbeddingRequest(
        model=raw["model"], inputs=inputs, params={k: v for k, v in raw.items() if k not in ("model", "input")}
    )
