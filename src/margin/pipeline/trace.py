"""The tracing seam of the request path, free of OpenTelemetry (docs/observability.md#opentelemetry).

A request that is traced carries a `RequestTrace` on its context (`ctx.trace`); one that is not
(tracing off, or not sampled) carries None, and then nothing here does more than look at that None.
The stages are timed where they are defined, by decorating the stage's method with `stage`:

    @stage("auth")
    async def authenticate(self, ctx: RequestContext) -> Principal: ...

so the handler reads as it always did. A traced stage leaves one `StageTime` (perf_counter seconds),
and each upstream attempt takes a span id of its own for the `traceparent` its upstream receives.
Nothing becomes a span on the request path: the recorder's background task turns the finished
request (its stages, attempts, usage and cost) into spans with explicit timestamps
(`margin.pipeline.otel`), and the SDK's batch processor exports them from its own thread.
"""

from __future__ import annotations

import functools
import inspect
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StageTime:
    name: str  # auth, route, limits, cache, meter
    started: float  # time.perf_counter()
    ended: float
    error: str | None = None  # the exception's class name when the stage raised (a refusal, a failure)


@dataclass(slots=True)
class RequestTrace:
    """One sampled request's trace ids and what its stages measured."""

    trace_id: int
    span_id: int  # the request's own (server) span
    parent_id: int | None = None  # the client's span, from its `traceparent`
    tracestate: str | None = None  # the client's `tracestate`, forwarded unchanged
    stages: list[StageTime] = field(default_factory=list)
    attempt_ids: dict[int, int] = field(default_factory=dict)  # attempt index -> its span id

    def upstream_headers(self, attempt: int) -> dict[str, str]:
        """W3C trace context for attempt number `attempt`'s upstream call: its parent is the
        attempt's own (client) span."""
        span_id = self.attempt_ids[attempt] = random.getrandbits(64) or 1
        headers = {"traceparent": f"00-{self.trace_id:032x}-{span_id:016x}-01"}
        if self.tracestate:
            headers["tracestate"] = self.tracestate
        return headers

    async def timed(self, name: str, work: Awaitable[T]) -> T:
        started, error = time.perf_counter(), None
        try:
            return await work
        except BaseException as exc:  # the stage's outcome is named whatever ended it; re-raised
            error = type(exc).__name__
            raise
        finally:
            self.stages.append(StageTime(name, started, time.perf_counter(), error))


def stage(name: str) -> Callable[[F], F]:
    """Time a pipeline stage: a method whose first argument after `self` is the request context.
    Untraced requests go straight through (one attribute read)."""

    def decorate(method: F) -> F:
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            def timed_async(self: object, ctx: Any, *args: Any, **kwargs: Any) -> Any:
                trace: RequestTrace | None = ctx.trace
                if trace is None:
                    return method(self, ctx, *args, **kwargs)
                return trace.timed(name, method(self, ctx, *args, **kwargs))

            return cast(F, timed_async)

        @functools.wraps(method)
        def timed_sync(self: object, ctx: Any, *args: Any, **kwargs: Any) -> Any:
            trace: RequestTrace | None = ctx.trace
            if trace is None:
                return method(self, ctx, *args, **kwargs)
            started, error = time.perf_counter(), None
            try:
                return method(self, ctx, *args, **kwargs)
            except BaseException as exc:  # the stage's outcome is named whatever ended it; re-raised
                error = type(exc).__name__
                raise
            finally:
                trace.stages.append(StageTime(name, started, time.perf_counter(), error))

        return cast(F, timed_sync)

    return decorate
