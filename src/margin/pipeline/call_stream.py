"""Stage ⑤ for streams, after the first chunk: keep the answer whole across upstream failures.

Once the first chunk is in hand the response status is sent, so a later failure cannot become an
HTTP error. What it can become, in order of preference:

- nothing visible sent yet (only the role chunk): restart on the rest of the route, invisibly;
- plain text sent: continue on a later deployment whose `capabilities.prefill` says it continues a
  trailing assistant message, handing it the text already sent;
- otherwise: a final chunk with `finish_reason: "error"`, then the error itself, which the API layer
  sends in-band with no `[DONE]`. A truncated answer never ends like a complete one.

A model group with `streaming.buffer_first_tokens` holds each stream's first tokens
(`margin.pipeline.stream_buffer`), response headers included: until the hold releases them the
client has nothing, so a break inside that window restarts on any later deployment, invisibly.

With `failover.on_disconnect: drain` the upstream is read by a task of its own, so a client that
hangs up cancels only its wait on that task and the rest of the answer can still be read and metered.

A broken attempt is billed for what it used: the usage its upstream had reported before the break
(the final report, or Anthropic's input figures from `message_start`) stands as reported, and only
the buckets it had not reported are estimated, from the prompt and the text it generated
(`margin.metering.usage_fill`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import replace
from typing import Any, Protocol

from margin import errors
from margin.metering.usage_fill import fill_unreported
from margin.pipeline.call_run import Run
from margin.pipeline.context import RequestContext
from margin.pipeline.meter import TokenCounter, count_prompt_now
from margin.pipeline.stream_buffer import FirstTokensHold
from margin.providers.base import Provider
from margin.resilience.deadline import deadline_error
from margin.resilience.error_actions import error_class
from margin.resilience.state import Resilience
from margin.types import JSON, Attempt, AttemptStatus, ChatRequest, Chunk, Usage

# Delta fields a prefill continuation cannot reproduce: once one was sent, the answer is not plain text.
_NOT_TEXT = ("tool_calls", "function_call", "refusal", "reasoning_content", "reasoning", "audio")
# Delta fields whose text the upstream bills as output besides `content`: counted by the estimate.
_BILLED_TEXT = ("reasoning_content", "reasoning", "refusal")
# Per-chunk fast paths: a delta that names none of these keys (the usual `{"content": "..."}`) needs
# no further look (the checks below run for every chunk of every stream).
_NOT_TEXT_KEYS = frozenset(_NOT_TEXT)
_BILLED_KEYS = frozenset((*_BILLED_TEXT, "tool_calls"))
_END = object()


class _WindowElapsed:
    """`_arrival`'s answer when the hold's time ran out before the next upstream chunk came."""


_WINDOW_ELAPSED = _WindowElapsed()


class StreamCaller(Protocol):
    """What a stream needs from the caller that opened it (`margin.pipeline.call.Caller`): end or fail
    an attempt, judge a deployment's failure, and open the stream again further along the route."""

    @property
    def providers(self) -> Mapping[str, Provider]: ...

    @property
    def resilience(self) -> Resilience: ...

    def end(self, ctx: RequestContext, attempt: Attempt) -> None: ...

    def fail(self, ctx: RequestContext, attempt: Attempt, error: errors.MarginError) -> None: ...

    async def judge(self, name: str, error: errors.MarginError, *, probe: bool) -> None: ...

    def counter(self, name: str) -> TokenCounter: ...

    async def open_on(
        self, ctx: RequestContext, run: Run, names: tuple[str, ...], request: ChatRequest
    ) -> tuple[Chunk, Attempt, AsyncIterator[Chunk]]: ...


class CallStream:
    def __init__(
        self,
        caller: StreamCaller,
        ctx: RequestContext,
        run: Run,
        request: ChatRequest,
        attempt: Attempt,
        upstream: AsyncIterator[Chunk],
        first: Chunk,
        *,
        drain: bool = False,
    ) -> None:
        self.caller, self.ctx, self.run = caller, ctx, run
        self.original = request
        self.request = request  # what the current attempt was asked (a continuation adds the prefill)
        self.attempt: Attempt | None = attempt  # the open attempt; None once it has ended
        self.source = attempt.index  # the attempt whose chunks the client is reading
        self.upstream = upstream
        self._idle = self._idle_of(attempt)  # the adapter's idle bound: a nearer deadline needs a timer
        self.sent: list[str] = []  # text the client has, for a continuation's prefill
        self.attempt_text: list[str] = []  # text the current attempt generated, for its partial usage
        self.attempt_usage: Usage | None = None  # the current attempt's usage report, once it sent one
        self.attempt_so_far: Usage | None = None  # what it reported before the end (Chunk.usage_so_far)
        self.visible = False
        self.continuable = request.kind == "chat" and request.n == 1
        self.switched = False
        self.last_body: JSON = first.body
        self.open_choices: set[int] = set()
        self.announced = False  # the client has a chunk (the role announcement at least)
        settings = caller.resilience.stream_buffer(run.group)
        self.hold = FirstTokensHold(settings, caller.counter(attempt.deployment)) if settings else None
        self._pending: asyncio.Future[Chunk | None] | None = None  # a read that outlived the hold's time
        self._observe(first)
        self._opening: list[Chunk] = []  # what to send before reading on
        if self.hold is None:
            self._delivered([first])  # the caller sends `first` itself
        else:
            self._opening = self._pass(first)  # the hold decides when `first` goes out
        self._chunks = self._iterate()
        self._queue: asyncio.Queue[Any] | None = None
        self._pump: asyncio.Task[None] | None = None
        if drain:
            self._queue = asyncio.Queue()
            self._pump = asyncio.create_task(self._run_pump(self._queue), name=f"pump-{ctx.request_id}")

    # --- the iterator the handler reads -----------------------------------------------------------

    def __aiter__(self) -> CallStream:
        return self

    async def __anext__(self) -> Chunk:
        if self._queue is None:
            return await anext(self._chunks)
        item = await self._queue.get()
        if item is _END:
            raise StopAsyncIteration
        if isinstance(item, errors.MarginError):
            raise item
        chunk: Chunk = item
        return chunk

    async def _run_pump(self, queue: asyncio.Queue[Any]) -> None:
        try:
            async for chunk in self._chunks:
                queue.put_nowait(chunk)  # unbounded: an answer is bounded by its max tokens
            queue.put_nowait(_END)
        except errors.MarginError as error:
            queue.put_nowait(error)

    async def close(self, status: AttemptStatus) -> None:
        """Stop reading the upstream and end the open attempt with `status`. Idempotent."""
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, errors.MarginError):
                await self._pending
        await self._chunks.aclose()
        await _close(self.upstream)
        attempt, self.attempt = self.attempt, None
        if attempt is not None:
            attempt.status = status
            self.caller.end(self.ctx, attempt)

    # --- reading, and recovering from a break -----------------------------------------------------

    async def first_to_send(self, first: Chunk) -> Chunk:
        """The chunk that opens the response: `first`, or with a hold the first chunk it releases.

        The response headers wait for it, so when every deployment breaks inside the hold's window
        the client gets a plain HTTP error rather than a stream that ends in one."""
        if self.hold is None:
            return first
        opened = False
        try:
            chunk = await anext(self, None)
            opened = True
        finally:
            if not opened:  # it failed, or the client left while it waited: stop reading upstream
                await self.close("cancelled")
        if chunk is None:
            raise errors.UpstreamServerError("The upstream sent an empty stream.")
        return chunk

    async def _iterate(self) -> AsyncGenerator[Chunk, None]:
        for chunk in self._opening:
            yield chunk
        while True:
            try:
                while (arrived := await self._arrival()) is not None:
                    for chunk in self._take(arrived):
                        yield chunk
                for chunk in self._delivered(self.hold.release() if self.hold is not None else []):
                    yield chunk  # the upstream ended inside the window: what was held is the answer
                return
            except errors.MarginError as error:
                failure = await self._recover(error)
                if failure is not None:
                    if self.announced:
                        yield self._error_finish()
                    raise failure from None

    def _take(self, arrived: Chunk | _WindowElapsed) -> list[Chunk]:
        """What the client gets for one arrival: the chunk, nothing (held back, or a role chunk the
        client already has), or everything the hold releases."""
        if isinstance(arrived, _WindowElapsed):
            return self._delivered(self.hold.release() if self.hold is not None else [])
        if self.switched and self.announced and _is_blank(arrived):
            return []
        self._observe(arrived)
        return self._pass(arrived)

    def _pass(self, chunk: Chunk) -> list[Chunk]:
        return self._delivered([chunk] if self.hold is None else self.hold.add(chunk))

    async def _arrival(self) -> Chunk | _WindowElapsed | None:
        """The next upstream chunk (None at the end), or `_WINDOW_ELAPSED` when the hold's time runs
        out first; the read then goes on in its task and the next call waits for it again."""
        wait = self.hold.seconds_left() if self.hold is not None else None
        if wait is None and self._pending is None:
            return await self._next()
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._next())
        done, _ = await asyncio.wait({self._pending}, timeout=wait)
        if not done:
            return _WINDOW_ELAPSED
        pending, self._pending = self._pending, None
        return pending.result()

    async def _next(self) -> Chunk | None:
        """The next upstream chunk, within the request's deadline (the adapter enforces idle gaps)."""
        assert self.attempt is not None
        name = self.attempt.deployment
        remaining = self.run.deadline.remaining()
        if remaining >= self._idle:
            return await anext(self.upstream, None)
        try:
            async with asyncio.timeout(remaining):
                return await anext(self.upstream, None)
        except TimeoutError:
            raise deadline_error(name, self.caller.resilience.failover.deadline) from None

    async def _recover(self, error: errors.MarginError) -> errors.MarginError | None:
        """Switch to another upstream and return None, or return the error that ends the stream."""
        attempt = self.attempt
        assert attempt is not None
        attempt.usage = self._partial_usage(attempt, error)
        self.caller.fail(self.ctx, attempt, error)
        self.attempt = None
        await _close(self.upstream)
        await self.caller.judge(attempt.deployment, error, probe=False)
        self.run.first_failure = self.run.first_failure or error_class(error)
        names = self._rest_of_route(attempt.deployment)
        if self.run.policy.action(error) == "return" or self.run.deadline.expired:
            names = ()
        request = self.original
        if self.visible:
            ok = self.continuable
            names = tuple(n for n in names if ok and self.caller.resilience.limits[n].prefill)
            request = self._continuation(self.caller.counter(attempt.deployment))
        if not names:
            return self._ending(error)
        try:
            first, self.attempt, upstream = await self.caller.open_on(self.ctx, self.run, names, request)
        except errors.MarginError as failed:
            return self._ending(failed)
        self.upstream, self.request, self.switched = _prepend(first, upstream), request, True
        self.source, self._idle = self.attempt.index, self._idle_of(self.attempt)
        self.attempt_text, self.attempt_usage, self.attempt_so_far = [], None, None
        if self.hold is not None and self.hold.open:
            self.hold.drop(self.caller.counter(self.attempt.deployment))  # never sent; billed to the broken attempt
        return None

    def _idle_of(self, attempt: Attempt) -> float:
        return self.caller.providers[attempt.deployment].deployment.timeouts.idle

    def _rest_of_route(self, failed: str) -> tuple[str, ...]:
        route = self.run.route
        return route[route.index(failed) + 1 :] if failed in route else ()

    def _ending(self, error: errors.MarginError) -> errors.MarginError:
        if not self.visible:
            return error
        sent = sum(len(t) for t in self.sent)
        return errors.StreamInterrupted(
            f"The answer was cut off after {sent} characters and no fallback could continue it: {error.message}"[:600],
            deployment=getattr(error, "deployment", None),
        )

    # --- bookkeeping ------------------------------------------------------------------------------

    def _observe(self, chunk: Chunk) -> None:
        """The attempt's own account of a chunk it sent (held back or not): usage and text."""
        if chunk.usage is not None:
            self.attempt_usage = chunk.usage
        if chunk.usage_so_far is not None:
            self.attempt_so_far = chunk.usage_so_far
        for choice in chunk.body.get("choices") or ():
            text = _text_of(choice)
            if text:
                self.attempt_text.append(text)
            delta = choice.get("delta")
            if delta and not _BILLED_KEYS.isdisjoint(delta):
                self.attempt_text.extend(_billed_text(delta))

    def _delivered(self, chunks: list[Chunk]) -> list[Chunk]:
        """`chunks`, noted as the client's from now on: what it has seen decides how a break ends."""
        for chunk in chunks:
            self.announced = True
            choices = chunk.body.get("choices")
            if not choices:
                continue
            self.last_body = chunk.body
            for choice in choices:
                index = choice.get("index", 0)
                if choice.get("finish_reason"):
                    self.open_choices.discard(index)
                else:
                    self.open_choices.add(index)
                text = _text_of(choice)
                if text:
                    self.sent.append(text)
                    self.visible = True
                fields = choice.get("delta") or choice
                if not _NOT_TEXT_KEYS.isdisjoint(fields) and any(fields.get(k) for k in _NOT_TEXT):
                    self.visible, self.continuable = True, False
        return chunks

    def _partial_usage(self, attempt: Attempt, error: errors.MarginError) -> Usage:
        """What a broken attempt used, billed to it, never to the deployment that takes over: the
        usage its upstream reported before the break, the rest estimated from the prompt and the
        text it generated (counted whole: a tokenizer over pieces over-counts split words)."""
        with_error = getattr(error, "usage_so_far", None)
        reported = self.attempt_usage or (with_error if isinstance(with_error, Usage) else None) or self.attempt_so_far
        count = self.caller.counter(attempt.deployment)
        counted = self.ctx.counted_prompt(self.request, attempt.deployment)  # ahead, off the loop
        estimate = Usage(
            input_uncached=counted if counted is not None else prompt_estimate(self.request, count),
            output=count("".join(self.attempt_text)),
            source="estimated",
        )
        return fill_unreported(reported, estimate)

    def _continuation(self, count: TokenCounter) -> ChatRequest:
        """The original request plus the text already sent, as an assistant message to continue."""
        messages = list(self.original.messages)
        prefill = "".join(self.sent)
        if messages and messages[-1].get("role") == "assistant" and isinstance(messages[-1].get("content"), str):
            prefill = messages.pop()["content"] + prefill  # the client's own prefill comes first
        messages.append({"role": "assistant", "content": prefill})
        params = dict(self.original.params)
        spent = sum(count(t) for t in self.sent)
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(params.get(key), int):
                params[key] = max(1, params[key] - spent)
        return replace(self.original, messages=messages, params=params)

    def _error_finish(self) -> Chunk:
        """A last chunk whose finish reason says the answer is not complete."""
        body = {k: v for k, v in self.last_body.items() if k not in ("choices", "usage")}
        legacy = body.get("object") == "text_completion"
        choices = [
            {"index": i, "text": "", "finish_reason": "error"}
            if legacy
            else {"index": i, "delta": {}, "finish_reason": "error"}
            for i in sorted(self.open_choices) or [0]
        ]
        return Chunk(body={**body, "choices": choices})


def prompt_estimate(request: ChatRequest, count: TokenCounter) -> int:
    """Pre-flight prompt size, counted as the meter estimates it (3 tokens of framing per message)."""
    return count_prompt_now(request, count)


def _text_of(choice: JSON) -> str | None:
    delta = choice.get("delta") or choice  # legacy completions carry "text" on the choice
    text = delta.get("content") or delta.get("text")
    return text if isinstance(text, str) else None


def _billed_text(delta: JSON) -> list[str]:
    """Generated text besides `content` that the upstream bills as output: reasoning, a refusal,
    and tool calls' arguments."""
    texts = [value for key in _BILLED_TEXT if isinstance(value := delta.get(key), str) and value]
    for call in delta.get("tool_calls") or ():
        arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
        if isinstance(arguments, str) and arguments:
            texts.append(arguments)
    return texts


def _is_blank(chunk: Chunk) -> bool:
    """A chunk that shows the client nothing: the role announcement a restarted upstream repeats."""
    choices = chunk.body.get("choices")
    if not choices or chunk.usage is not None:
        return False
    for choice in choices:
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") or choice.get("text") or any(v for k, v in delta.items() if k != "role"):
            return False
    return True


async def _prepend(first: Chunk, rest: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await _close(rest)


async def _close(stream: AsyncIterator[Chunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
