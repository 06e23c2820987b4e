"""Shared helpers for the routing-policy tests: a tiered config on in-process fakes, a pipeline
built from it with records captured instead of written, and request/context builders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from margin import errors
from margin.app import create_app
from margin.config import parse_config
from margin.config.model import DeploymentConfig
from margin.pipeline.context import RequestContext
from margin.pipeline.handler import Pipeline
from margin.pipeline.record import RequestRecord
from margin.providers.fake.adapter import FakeProvider
from margin.storage.memory import MemoryKeyStore
from margin.types import ChatRequest, ChatResult, Chunk, Principal

DEPLOYMENTS = """
deployments:
  - {name: small, provider: fake, model: small-model, tier: 1, price: {input: "0.1", output: "0.2"}}
  - {name: small-b, provider: fake, model: small-b-model, tier: 1, price: {input: "0.1", output: "0.2"}}
  - {name: mid, provider: fake, model: mid-model, tier: 2, price: {input: "1", output: "2"}}
  - {name: big, provider: fake, model: big-model, tier: 3, price: {input: "5", output: "15"}}
  - {name: judge, provider: fake, model: judge-model, fake: {content: "YES, fine"}, price: {input: "1", output: "1"}}
  - {name: nay, provider: fake, model: nay-model, fake: {content: "No."}, price: {input: "1", output: "1"}}
"""

BASE_GROUPS = """
  - {name: judge, deployments: [judge]}
  - {name: nay, deployments: [nay]}
  - {name: plain, deployments: [big]}
"""


def config_text(tmp: Path, group: str) -> str:
    return f"data_dir: {tmp}\ncache: {{enabled: false}}\n{DEPLOYMENTS}\nmodels:\n{group}{BASE_GROUPS}"


class FailingProvider(FakeProvider):
    """The shipped fake, failing before it answers (a tier that is down)."""

    def __init__(self, deployment: DeploymentConfig, error: errors.MarginError | None = None) -> None:
        super().__init__(deployment)
        self.error = error or errors.UpstreamConnection("down", deployment=deployment.name)

    async def chat(self, request: ChatRequest) -> ChatResult:
        self.calls += 1
        raise self.error

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.calls += 1
        raise self.error
        yield  # pragma: no cover - makes this an async generator


class RecordingProvider(FakeProvider):
    """The shipped fake, keeping the requests it was sent."""

    def __init__(self, deployment: DeploymentConfig) -> None:
        super().__init__(deployment)
        self.seen: list[ChatRequest] = []

    async def chat(self, request: ChatRequest) -> ChatResult:
        self.seen.append(request)
        return await super().chat(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.seen.append(request)
        async for chunk in super().stream(request):
            yield chunk


def build(tmp: Path, group: str, **providers: Any) -> tuple[Pipeline, list[RequestRecord]]:
    """A pipeline over `group` (YAML list items) plus the base groups; `providers` maps deployment
    names to provider classes that replace the fake."""
    config = parse_config(config_text(tmp, group))
    by_name = {d.name: d for d in config.deployments}
    built = {name: factory(by_name[name]) for name, factory in providers.items()}
    app = create_app(config, providers=built, key_store=MemoryKeyStore())
    pipeline: Pipeline = app.state.gateway.pipeline
    records: list[RequestRecord] = []
    pipeline.recorder.submit = records.append  # type: ignore[method-assign]
    return pipeline, records


def chat(text: str, model: str = "auto", **params: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}], params=dict(params))


def context(principal: Principal | None = None, **hints: str) -> RequestContext:
    ctx = RequestContext(request_id="req_routing", endpoint="chat")
    ctx.route_hints.update(hints)
    if principal is not None:
        ctx.principal = principal
    return ctx
