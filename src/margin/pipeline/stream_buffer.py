"""The first-tokens buffer of a stream (a model group's `streaming.buffer_first_tokens`).

`CallStream` puts each upstream chunk through a `FirstTokensHold` before the client sees it. While
the hold is open nothing reaches the client, so a break is still invisible: the held chunks are
dropped and the answer restarts on any later deployment of the route, with the original request (a
fallback need not accept prefill). The hold releases everything it holds, and stays open no more
for the rest of the stream, as soon as:

- the held chunks carry `buffer_first_tokens` output tokens (content, legacy `text`, reasoning,
  refusal, and tool-call names and arguments all count: each is output the client will read; a
  role announcement or an empty delta counts nothing);
- every choice seen so far has a finish reason (the answer is complete, there is nothing to wait
  for), or the upstream ends its stream;
- `buffer_max_ms` has passed since the attempt's first chunk (the caller asks `seconds_left`).

A drop restarts the count and the clock for the deployment that takes over: its first tokens are
held in the same way, so a second break inside its window moves on invisibly too.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from margin.config.streaming import StreamingConfig
from margin.pipeline.meter import TokenCounter
from margin.types import JSON, Chunk

# Delta fields whose text is output the client reads (tool calls are counted separately).
_TEXT_FIELDS = ("content", "text", "reasoning_content", "reasoning", "refusal")


class FirstTokensHold:
    def __init__(
        self, settings: StreamingConfig, count: TokenCounter, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = settings.buffer_first_tokens
        self.max_s = settings.buffer_max_ms / 1000 if settings.buffer_max_ms is not None else None
        self.count = count  # the deployment's token counter; replaced when another deployment takes over
        self.clock = clock
        self.open = True  # still holding; once released, every later chunk passes straight through
        self.held: list[Chunk] = []
        self.tokens = 0
        self._unfinished: set[int] = set()  # choices seen without a finish reason yet
        self._since: float | None = None  # when the first held chunk arrived

    def add(self, chunk: Chunk) -> list[Chunk]:
        """The chunks to send now: `[chunk]` once released, [] while holding, everything held when
        this chunk closes the window."""
        if not self.open:
            return [chunk]
        if self._since is None:
            self._since = self.clock()
        self.held.append(chunk)
        self.tokens += output_tokens(chunk, self.count)
        finished = self._note_choices(chunk)
        if self.tokens >= self.limit or finished or self.seconds_left() == 0:
            return self.release()
        return []

    def release(self) -> list[Chunk]:
        """Close the window: everything held, in order, to be sent now."""
        self.open = False
        held, self.held = self.held, []
        return held

    def drop(self, count: TokenCounter) -> list[Chunk]:
        """A break inside the window: the held chunks are thrown away (the broken attempt is billed for
        them by the caller) and the window starts again for the next deployment, counted with `count`."""
        dropped, self.held = self.held, []
        self.tokens, self._since, self.count = 0, None, count
        self._unfinished.clear()
        return dropped

    def seconds_left(self) -> float | None:
        """How long the held chunks may still wait, or None when there is no time limit to keep
        (none configured, the window is closed, or nothing is held yet)."""
        if self.max_s is None or not self.open or self._since is None:
            return None
        return max(0.0, self.max_s - (self.clock() - self._since))

    def _note_choices(self, chunk: Chunk) -> bool:
        """Track which choices are still generating; True when the chunk finished the last of them."""
        finished_now = False
        for choice in chunk.body.get("choices") or ():
            index = choice.get("index", 0)
            if choice.get("finish_reason"):
                self._unfinished.discard(index)
                finished_now = True
            else:
                self._unfinished.add(index)
        return finished_now and not self._unfinished


def output_tokens(chunk: Chunk, count: TokenCounter) -> int:
    """Output tokens a chunk shows the client, as the deployment's counter counts them."""
    total = 0
    for choice in chunk.body.get("choices") or ():
        delta: JSON = choice.get("delta") or choice  # legacy completions carry "text" on the choice
        total += sum(count(v) for k in _TEXT_FIELDS if isinstance(v := delta.get(k), str) and v)
        for call in delta.get("tool_calls") or ():
            function = call.get("function") or {}
            total += sum(count(v) for v in (function.get("name"), function.get("arguments")) if isinstance(v, str))
        legacy = delta.get("function_call")
        if isinstance(legacy, dict):
            total += sum(count(v) for v in legacy.values() if isinstance(v, str))
    return total
