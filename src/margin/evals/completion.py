"""One call to margin and what came back: the shape every eval target returns (HTTP, in-process, or
a caller's own function), and the protocol judges and runs call through."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Completion:
    text: str | None  # the answer (None when the call failed)
    error: str | None = None  # why the call failed; None when it answered
    status: int | None = None  # HTTP status, where there was one
    latency_ms: float = 0.0  # request sent -> answer complete
    ttft_ms: float | None = None  # request sent -> first content (streamed calls only)
    cost_usd: Decimal | None = None  # margin's exact cost (x-margin-cost-usd); None: not reported
    input_tokens: int | None = None
    output_tokens: int | None = None
    request_id: str | None = None
    deployment: str | None = None  # the deployment that answered (x-margin-deployment)

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


class Completer(Protocol):
    """Asks margin for one chat completion of `model` (a model group, alias or deployment name)."""

    async def complete(
        self, model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> Completion: ...
