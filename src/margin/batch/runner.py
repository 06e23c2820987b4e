"""One line of a batch through the request pipeline, as a live request of the batch creator's key
would go: the same stages (budgets, routing, cache, failover, metering, ledger), at endpoint class
`batch`, tagged `batch` and `batch:<id>` so every ledger row names its batch.

The HTTP layer supplies the `LineExecutor` (how a body of an endpoint becomes a pipeline call and
its answer a response body), so this module never parses an HTTP request itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, cast

import orjson

from margin import errors
from margin.batch.ids import new_line_id, new_request_id
from margin.batch.validate import BodyChecker
from margin.config.batch import BatchConfig
from margin.pipeline.context import Endpoint, RequestContext
from margin.storage.batches import BatchRecord, LineResult, LineSpec
from margin.translate import anthropic_error_body
from margin.types import Principal

ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/messages": "messages",
}
BATCH_TAG = "batch"


class LineExecutor(BodyChecker, Protocol):
    async def run(self, ctx: RequestContext, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        """The response body of `body` sent to `endpoint` through the pipeline; a MarginError when it fails."""


class BudgetPause(Exception):
    """The creator's budget has no room for this line now: the batch waits instead of failing it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def batch_principal(batch: BatchRecord) -> Principal:
    """The creator's principal as it was at creation, at endpoint class `batch`, tagged with the batch."""
    saved = batch.principal
    tags = tuple(str(t) for t in saved.get("tags", ()))
    extra = tuple(t for t in (BATCH_TAG, f"batch:{batch.batch_id}") if t not in tags)
    return Principal(
        key_id=str(saved.get("key_id", "anonymous")),
        org=str(saved.get("org", "default")),
        team=str(saved.get("team", "default")),
        user=str(saved.get("user", "default")),
        tags=(*tags, *extra),
        endpoint_class="batch",
        allowed_models=tuple(saved.get("allowed_models", ())),
        allowed_cost_ranks=tuple(int(r) for r in saved.get("allowed_cost_ranks", ())),
    )


def principal_snapshot(principal: Principal) -> dict[str, Any]:
    return {
        "key_id": principal.key_id, "org": principal.org, "team": principal.team, "user": principal.user,
        "tags": list(principal.tags), "allowed_models": list(principal.allowed_models),
        "allowed_cost_ranks": list(principal.allowed_cost_ranks),
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    ctx: RequestContext


class LineRunner:
    def __init__(self, executor: LineExecutor, settings: BatchConfig, clock: Callable[[], float]) -> None:
        self.executor = executor
        self.settings = settings
        self.clock = clock

    async def run(self, batch: BatchRecord, spec: LineSpec, data: bytes) -> LineResult:
        """Run the line (retrying transient failures) and shape its output line; raises BudgetPause
        when the budget has no room (the line stays unfinished)."""
        body = cast(dict[str, Any], orjson.loads(data)["body"])
        answer = await self._answer(batch, body)
        return self._result(spec, answer)

    async def _answer(self, batch: BatchRecord, body: dict[str, Any]) -> Answer:
        attempt = 0
        while True:
            attempt += 1
            ctx = self._context(batch)
            try:
                return Answer(200, await self.executor.run(ctx, batch.endpoint, body), ctx)
            except errors.BudgetExceeded as exc:
                raise BudgetPause(exc.message) from None
            except errors.MarginError as exc:
                if attempt >= self.settings.line_attempts or not _transient(exc):
                    return Answer(exc.status, _error_body(batch, exc, ctx.request_id), ctx)
                await asyncio.sleep(_wait_s(exc, self.settings.retry_backoff_s * 2 ** (attempt - 1)))

    def refused(self, batch: BatchRecord, spec: LineSpec, error: errors.MarginError) -> LineResult:
        """The line's result when margin refuses it before it runs (no upstream call, no cost)."""
        ctx = self._context(batch)
        return self._result(spec, Answer(error.status, _error_body(batch, error, ctx.request_id), ctx))

    def _context(self, batch: BatchRecord) -> RequestContext:
        ctx = RequestContext(request_id=new_request_id(), endpoint=ENDPOINTS[batch.endpoint])
        ctx.principal = batch_principal(batch)
        ctx.authenticated = True  # the creator's key was checked when the batch was created
        return ctx

    def _result(self, spec: LineSpec, answer: Answer) -> LineResult:
        ctx = answer.ctx
        line = {
            "id": new_line_id(),
            "custom_id": spec.custom_id,
            "response": {"status_code": answer.status, "request_id": ctx.request_id, "body": answer.body},
            "error": None,
        }
        # What the ledger records for the request, all its attempts (a cache hit costs nothing).
        cost = ctx.cost.total.usd if ctx.cost is not None else Decimal(0)
        usage = ctx.usage
        return LineResult(
            line_no=spec.line_no,
            outcome="completed" if answer.status < 400 else "failed",
            result=orjson.dumps(line).decode(),
            request_id=ctx.request_id,
            finished_at=self.clock(),
            input_tokens=usage.input_total if usage is not None else 0,
            output_tokens=usage.output_total if usage is not None else 0,
            cost=cost,
        )


def unrunnable(spec: LineSpec, code: str, message: str, finished_at: float) -> LineResult:
    """The result of a line that cannot run at all (its input file was deleted under it)."""
    line = {"id": new_line_id(), "custom_id": spec.custom_id, "response": None,
            "error": {"code": code, "message": message}}  # fmt: skip
    return LineResult(spec.line_no, "failed", orjson.dumps(line).decode(), "", finished_at)


def _error_body(batch: BatchRecord, error: errors.MarginError, request_id: str) -> dict[str, Any]:
    """The error body the live endpoint would have sent (Anthropic's envelope for /v1/messages)."""
    if batch.api == "anthropic":
        return dict(anthropic_error_body(error, request_id=request_id))
    return error.to_openai()


def _transient(error: errors.MarginError) -> bool:
    """Worth trying again later: margin's own rate limit, its capacity, or an upstream's passing trouble."""
    if isinstance(error, errors.RateLimited | errors.ServiceUnavailable):
        return True
    return isinstance(error, errors.UpstreamError) and (error.retryable or error.status >= 500)


def _wait_s(error: errors.MarginError, backoff_s: float) -> float:
    retry_after = error.headers.get("retry-after")
    if retry_after is not None and retry_after.replace(".", "", 1).isdigit():
        return max(backoff_s, float(retry_after))
    return backoff_s
