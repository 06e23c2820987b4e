"""What a finished, traced request becomes as spans: names, parents, times and attributes, without
OpenTelemetry itself (`margin.pipeline.otel` hands them to the SDK).

    chat <model group>            server    the request, from its first byte to its last
    ├── margin.auth               internal  each stage the request went through, timed by
    ├── margin.route                        `margin.pipeline.trace.stage`
    ├── margin.limits                       counting the prompt, then the reservation
    ├── margin.cache
    ├── chat <upstream model>     client    each upstream attempt (the upstream's own spans are
    ├── chat <upstream model>               its children, through `traceparent`)
    ├── margin.meter
    └── margin.record                       until the recorder handed the request to its sinks

Attributes follow the OpenTelemetry GenAI semantic conventions (`gen_ai.*`, `server.*`,
`error.type`) plus margin's own (`margin.*`). No prompt, answer, key or header value is ever an
attribute: only names, counts, times and the exact cost (a decimal string, never a float). Each
attribute costs the exporter about as much to encode as a fifth of a span, so none is a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from margin.config.model import DeploymentConfig
from margin.pipeline.context import RequestContext
from margin.pipeline.record import RequestRecord
from margin.pipeline.trace import RequestTrace, StageTime
from margin.types import Attempt, Cost, Usage

Value = str | int | float | bool
Kind = Literal["server", "client", "internal"]

OPERATIONS = {"chat": "chat", "messages": "chat", "completions": "text_completion", "embeddings": "embeddings"}
# margin's provider names as the GenAI conventions' `gen_ai.provider.name` values
PROVIDERS = {"openai_compat": "openai", "anthropic": "anthropic", "local": "margin.local", "fake": "margin.fake"}
CACHE = {"exact": "hit", "semantic": "semantic", "coalesced": "coalesced", "miss": "miss"}


@dataclass(frozen=True, slots=True)
class Upstream:
    """What a span may say about a deployment: its provider and where it is (never its key)."""

    provider: str
    address: str | None
    port: int | None

    @classmethod
    def of(cls, deployment: DeploymentConfig) -> Upstream:
        provider = PROVIDERS.get(deployment.provider, deployment.provider)
        if not deployment.base_url:
            return cls(provider, "api.anthropic.com" if deployment.provider == "anthropic" else None, None)
        url = urlsplit(deployment.base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        return cls(provider, url.hostname, port)


class SpanPlan(NamedTuple):  # a tuple: made 8 times per traced request
    name: str
    span_id: int
    parent_id: int | None  # None: the request span, child of the client's span if it sent one
    kind: Kind
    started: float  # time.perf_counter() seconds
    ended: float
    attributes: dict[str, Value]
    error: str | None = None


def spans_of(
    record: RequestRecord, upstreams: Mapping[str, Upstream], now: float, new_id: Callable[[], int]
) -> list[SpanPlan]:
    """The spans of `record`'s traced request (its context carries a `RequestTrace`)."""
    ctx = record.ctx
    trace = ctx.trace
    assert trace is not None
    operation = OPERATIONS.get(ctx.endpoint, ctx.endpoint)
    ended = ctx.started + record.latency_s
    spans = [request_span(record, trace, operation, ended)]
    last = ctx.started
    for stage in merged(trace.stages):
        attributes: dict[str, Value] = {} if stage.error is None else {"error.type": stage.error}
        spans.append(
            SpanPlan(
                f"margin.{stage.name}", new_id(), trace.span_id, "internal", stage.started, stage.ended,
                attributes, stage.error,
            )
        )  # fmt: skip
        last = max(last, stage.ended)
    for attempt in ctx.attempts:
        span_id = trace.attempt_ids.get(attempt.index) or new_id()
        spans.append(attempt_span(attempt, span_id, trace.span_id, operation, ctx, upstreams))
        last = max(last, attempt.started_at + attempt.latency_ms / 1000)
    spans.append(SpanPlan("margin.record", new_id(), trace.span_id, "internal", last, max(last, now), {}))
    return spans


def merged(stages: list[StageTime]) -> list[StageTime]:
    """Consecutive parts of one stage as one span (limits: counting the prompt, then reserving)."""
    out: list[StageTime] = []
    for stage in stages:
        if out and out[-1].name == stage.name and out[-1].error is None:
            out[-1] = StageTime(stage.name, out[-1].started, stage.ended, stage.error)
        else:
            out.append(stage)
    return out


def request_span(record: RequestRecord, trace: RequestTrace, operation: str, ended: float) -> SpanPlan:
    ctx = record.ctx
    group = ctx.decision.model_group if ctx.decision is not None else None
    attributes: dict[str, Value] = {"gen_ai.operation.name": operation, "margin.request_id": ctx.request_id}
    _put(attributes, "gen_ai.request.model", group)
    _put(attributes, "gen_ai.response.model", ctx.model)
    _put(attributes, "margin.deployment", ctx.deployment)
    _put(attributes, "margin.cost_rank", ctx.cost_rank)
    _put(attributes, "margin.tier", ctx.route_outcome.answered_tier or (ctx.decision.tier if ctx.decision else None))
    _put(attributes, "margin.route.policy", ctx.decision.policy if ctx.decision is not None else None)
    _put(attributes, "margin.team", ctx.principal.team or None)
    _usage(attributes, record.usage)
    _cost(attributes, ctx.cost)
    cache = ctx.extra_headers.get("x-margin-cache")
    if cache is not None:
        attributes["margin.cache"] = CACHE.get(cache, "bypass" if cache.startswith("bypass") else cache)
        _put(attributes, "margin.cache.saved_usd", ctx.extra_headers.get("x-margin-saved-usd"))
    error = None if record.status == "ok" else record.status
    _put(attributes, "error.type", error)
    name = f"{operation} {group}" if group else operation
    return SpanPlan(name, trace.span_id, None, "server", ctx.started, ended, attributes, error)


def attempt_span(
    attempt: Attempt, span_id: int, parent: int, operation: str, ctx: RequestContext, upstreams: Mapping[str, Upstream]
) -> SpanPlan:
    upstream = upstreams.get(attempt.deployment)
    attributes: dict[str, Value] = {
        "gen_ai.operation.name": operation,
        "gen_ai.request.model": attempt.model,
        "margin.deployment": attempt.deployment,
        "margin.attempt": attempt.index,
        "margin.fallback": attempt.index > 0,
    }
    if attempt.index > 0:
        attributes["margin.fallback_from"] = ctx.attempts[attempt.index - 1].deployment
    if upstream is not None:
        attributes["gen_ai.provider.name"] = upstream.provider
        _put(attributes, "server.address", upstream.address)
        _put(attributes, "server.port", upstream.port)
    if attempt.status == "ok":
        attributes["gen_ai.response.model"] = attempt.model
    if attempt.ttft_ms is not None:
        attributes["margin.ttft_ms"] = round(attempt.ttft_ms, 3)
    _usage(attributes, attempt.usage)
    _cost(attributes, attempt.cost)
    error = attempt.error_class if attempt.status != "ok" else None
    _put(attributes, "error.type", error)
    ended = attempt.started_at + attempt.latency_ms / 1000
    name = f"{operation} {attempt.model}"
    return SpanPlan(name, span_id, parent, "client", attempt.started_at, ended, attributes, error)


def _usage(attributes: dict[str, Value], usage: Usage | None) -> None:
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.input_total
        attributes["gen_ai.usage.output_tokens"] = usage.output_total


def _cost(attributes: dict[str, Value], cost: Cost | None) -> None:
    """The exact cost, as the ledger has it: a decimal string, never rounded through a float."""
    if cost is None:
        return
    amount = _exact(cost.total.usd)
    attributes["margin.cost_usd"] = amount
    attributes["gen_ai.usage.cost.amount"] = amount
    attributes["gen_ai.usage.cost.currency"] = "USD"
    attributes["gen_ai.usage.cost.source"] = f"margin.{cost.basis}"


def _exact(amount: Decimal) -> str:
    return format(amount, "f")


def _put(attributes: dict[str, Value], key: str, value: Value | None) -> None:
    if value is not None:
        attributes[key] = value
