"""An in-process upstream that follows a script, one step per call, for the call-stage tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
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
from margin.types import ChatRequest, ChatResult, Chunk


@dataclass
class Cut:
    """Stream `after` chunks (the role chunk counts), then fail with `error`."""

    after: int
    error: errors.MarginError = field(default_factory=lambda: errors.StreamInterrupted("cut", deployment="x"))


@dataclass
class Stall:
    """Stream `after` chunks (the role chunk counts), then go silent for `seconds`, then go on."""

    after: int
    seconds: float = 3600.0


HANG = "hang"
Step = errors.MarginError | Cut | Stall | str | None


class Scripted(FakeProvider):
    def __init__(self, deployment: DeploymentConfig, *script: Step) -> None:
        super().__init__(deployment)
        self.script = list(script)
        self.requests: list[ChatRequest] = []

    def _step(self, request: ChatRequest) -> Step:
        self.requests.append(request)
        return self.script.pop(0) if self.script else None

    async def chat(self, request: ChatRequest) -> ChatResult:
        step = self._step(request)
        if step == HANG:
            await asyncio.sleep(3600)
        if isinstance(step, errors.MarginError):
            self.calls += 1
            raise step
        return await super().chat(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        step = self._step(request)
        if step == HANG:
            await asyncio.sleep(3600)
        if isinstance(step, errors.MarginError):
            self.calls += 1
            raise step
        sent = 0
        async for chunk in super().stream(request):
            if isinstance(step, Cut) and sent == step.after:
                raise step.error
            if isinstance(step, Stall) and sent == step.after:
                await asyncio.sleep(step.seconds)
            sent += 1
            yield chunk


BASE = """
failover: {{deadline: {deadline}, retry_budget: {budget}, on_disconnect: {disconnect}{failover}}}
deployments:
  - {{name: primary, provider: fake, model: big, price: {{input: "4", output: "8"}}, {primary}}}
  - {{name: backup, provider: fake, model: small, price: {{input: "1", output: "2"}}, {backup}}}
  - {{name: solo, provider: fake, model: solo, price: {{input: "1", output: "1"}}, {solo}}}
models:
  - {{name: chat, deployments: [primary, backup]{chat}}}
  - {{name: alone, deployments: [solo]}}
"""
FAST_RETRY = "retry: {max_retries: 1, base_delay: 0.01, max_delay: 0.02, retry_after_cap: 1}"


def build(
    *,
    primary: tuple[Step, ...] = (),
    backup: tuple[Step, ...] = (),
    solo: tuple[Step, ...] = (),
    deadline: float = 5,
    budget: int = 3,
    disconnect: str = "cancel",
    extra: dict[str, str] | None = None,
    chat: str = "",
    failover: str = "",
) -> tuple[Pipeline, dict[str, Scripted], list[RequestRecord]]:
    extra = {"primary": FAST_RETRY, "backup": FAST_RETRY, "solo": FAST_RETRY, **(extra or {})}
    text = BASE.format(deadline=deadline, budget=budget, disconnect=disconnect, chat=chat, failover=failover, **extra)
    config = parse_config(text)
    by_name = {d.name: d for d in config.deployments}
    providers = {
        "primary": Scripted(by_name["primary"], *primary),
        "backup": Scripted(by_name["backup"], *backup),
        "solo": Scripted(by_name["solo"], *solo),
    }
    app = create_app(config, providers=providers, key_store=MemoryKeyStore())
    pipeline: Pipeline = app.state.gateway.pipeline
    records: list[RequestRecord] = []
    pipeline.recorder.submit = records.append  # type: ignore[method-assign]
    return pipeline, providers, records


def request(model: str = "chat", text: str = "one two three four five six seven eight", **params: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}], params=dict(params))


def ctx() -> RequestContext:
    return RequestContext(request_id="req_test", endpoint="chat")


def text_of(chunks: list[Chunk]) -> str:
    return "".join(c["delta"].get("content") or "" for ch in chunks for c in ch.body.get("choices") or ())


def cost(usage_in: int, usage_out: int, price_in: str, price_out: str) -> Decimal:
    return (Decimal(usage_in) * Decimal(price_in) + Decimal(usage_out) * Decimal(price_out)) / 1_000_000
