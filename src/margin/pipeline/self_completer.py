"""margin asking itself, in process: a `Completer` (margin.evals) over the pipeline, for work beside
the request path that needs answers (the drift re-evaluation of production samples). Each call is an
ordinary request: authenticated as margin's own `drift` principal, tagged `eval` at class batch,
metered and recorded, never served from the cache. Its judge (`judging()`) asks as the same
principal, tagged `judge` and `drift`: the drift judge's calls are rows of their own, never a tenant's."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from margin.errors import MarginError
from margin.evals.completion import Completion
from margin.pipeline.context import RequestContext
from margin.routing.policies.checks import answer_text
from margin.types import ChatRequest, ChatResult, Principal

Chat = Callable[[RequestContext, ChatRequest], Awaitable[ChatResult]]
DRIFT_PRINCIPAL = Principal(
    key_id="margin:drift", org="margin", team="margin:drift", user="drift", tags=("eval", "drift"),
    endpoint_class="batch",
)  # fmt: skip
DRIFT_JUDGE_PRINCIPAL = dataclasses.replace(DRIFT_PRINCIPAL, tags=("judge", "drift"))


class SelfCompleter:
    def __init__(self, principal: Principal = DRIFT_PRINCIPAL, parent: SelfCompleter | None = None) -> None:
        self.principal = principal
        self._parent = parent
        self._chat: Chat | None = None  # the pipeline's, set by the composition root

    @property
    def chat(self) -> Chat | None:
        return self._parent.chat if self._parent is not None else self._chat

    @chat.setter
    def chat(self, chat: Chat | None) -> None:
        self._chat = chat

    def judging(self) -> SelfCompleter:
        """The same pipeline asked as the drift judge (tags `judge`, `drift`)."""
        return SelfCompleter(DRIFT_JUDGE_PRINCIPAL, parent=self)

    async def complete(
        self, model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> Completion:
        chat = self.chat
        assert chat is not None, "SelfCompleter.chat is set by the composition root"
        ctx = RequestContext(request_id="req_" + os.urandom(12).hex(), endpoint="chat")
        ctx.principal, ctx.authenticated = self.principal, True
        ctx.cache_control = "no-cache, no-store"
        request = ChatRequest(model=model, messages=[dict(m) for m in messages], params=dict(params))
        started = time.perf_counter()
        try:
            result = await chat(ctx, request)
        except MarginError as exc:
            return Completion(text=None, error=f"{type(exc).__name__}: {exc.message}", latency_ms=_ms(started))
        return Completion(
            text=answer_text(result.body), latency_ms=_ms(started), request_id=ctx.request_id,
            deployment=ctx.deployment, cost_usd=ctx.cost.total.usd if ctx.cost is not None else None,
        )  # fmt: skip


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
