"""A model group's `streaming:` settings: how much of a stream margin holds before the client sees it."""

from __future__ import annotations

from pydantic import Field, model_validator

from margin.config.base import Strict


class StreamingConfig(Strict):
    """Hold the first output tokens of each streamed answer before sending them (docs/failover.md).

    While nothing is sent, a stream cut is not visible: the answer restarts on any later deployment
    of the route, prefill or not, and the client reads only that deployment's answer. The cost is
    time to the first token: the client waits for `buffer_first_tokens` tokens (or the end of the
    answer, or `buffer_max_ms`, whichever comes first). Off (0) by default."""

    buffer_first_tokens: int = Field(
        0, ge=0, le=4096, description="Output tokens held before the first is sent (0: off)"
    )
    buffer_max_ms: float | None = Field(
        None, gt=0, le=60_000, description="Hold no longer than this, counted from each attempt's first event"
    )

    @property
    def buffers(self) -> bool:
        return self.buffer_first_tokens > 0

    @model_validator(mode="after")
    def _max_needs_tokens(self) -> StreamingConfig:
        if self.buffer_max_ms is not None and not self.buffers:
            raise ValueError("streaming.buffer_max_ms bounds a buffer: set buffer_first_tokens too")
        return self
