"""`logging:`: the log format (docs/observability.md#logs)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from margin.config.base import Strict


class LoggingConfig(Strict):
    format: Literal["text", "json"] = Field(
        "text", description="text: uvicorn's lines; json: one object per line with the request id and principal ids"
    )
