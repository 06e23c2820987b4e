"""Shared pieces of the stream-integrity and stream-billing scenarios (issue 15, items 1 and 2): a
gateway in front of the fake upstream with OpenAI-compatible and Anthropic deployments, each with its
own scripted fault, and small helpers that drive the official SDKs and read the ledger.

Every deployment's fake model is named after it, so its fault applies to it alone. Prices are per
million tokens and chosen so that hand-computed costs are short decimals.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import openai

from tests.e2e.failover_env import DEADLINE_S, FAST, Served
from tests.support.processes import fake_upstream, gateway

PROMPT = "alpha beta gamma delta epsilon zeta eta theta iota kappa"  # 56 bytes; the fake echoes it
# The fake streams its answer in 8 pieces of ceil(56 / 8) = 7 characters.
PIECES = ["alpha b", "eta gam", "ma delt", "a epsil", "on zeta", " eta th", "eta iot", "a kappa"]
OPENAI_PRICE = '{input: "1", output: "2"}'
ANTHROPIC_PRICE = '{input: "3", output: "15", cache_read: "0.3", cache_write: "3.75"}'
PREFILL = "capabilities: {prefill: true}"


@dataclass(frozen=True)
class Upstream:
    provider: str  # openai_compat | anthropic
    fault: str | None = None
    extra: str = ""  # more YAML keys for the deployment


def config_yaml(upstream: str, deps: Mapping[str, Upstream], groups: Mapping[str, list[str]]) -> str:
    lines = [f"failover: {{deadline: {DEADLINE_S}, retry_budget: 3}}", "deployments:"]
    for name, dep in deps.items():
        anthropic_face = dep.provider == "anthropic"
        lines += [
            f"  - name: {name}",
            f"    provider: {dep.provider}",
            f"    model: {name}",
            f"    base_url: {upstream if anthropic_face else upstream + '/v1'}",
            f"    timeouts: {FAST}",
            "    retry: {max_retries: 0}",
            f"    price: {ANTHROPIC_PRICE if anthropic_face else OPENAI_PRICE}",
            *(f"    {line}" for line in dep.extra.splitlines() if line.strip()),
        ]
    lines.append("models:")
    for name, members in groups.items():
        lines.append(f"  - {{name: {name}, deployments: [{', '.join(members)}]}}")
    return "\n".join(lines) + "\n"


@contextmanager
def serve(tmp: Path, deps: Mapping[str, Upstream], groups: Mapping[str, list[str]]) -> Iterator[Served]:
    faults = [arg for name, dep in deps.items() if dep.fault for arg in ("--fault", f"{name}={dep.fault}")]
    with fake_upstream(*faults) as upstream, gateway(config_yaml(upstream, deps, groups), tmp) as url:
        yield Served(url, upstream, tmp / "data" / "margin.db")


def openai_client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0, timeout=DEADLINE_S + 5)


def anthropic_client(served: Served) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=served.url, api_key="unused", max_retries=0, timeout=DEADLINE_S + 5)


@dataclass
class SdkStream:
    """What an openai SDK client saw of one streamed chat completion."""

    request_id: str
    chunks: list[Any]
    error: openai.APIError | None

    @property
    def text(self) -> str:
        return "".join(c.choices[0].delta.content or "" for c in self.chunks if c.choices)

    @property
    def finish_reasons(self) -> list[str]:
        return [c.choices[0].finish_reason for c in self.chunks if c.choices and c.choices[0].finish_reason]


def stream_chat(served: Served, model: str, *, include_usage: bool = False, **params: Any) -> SdkStream:
    """Stream one chat completion through the openai SDK; an in-band error is caught and kept."""
    options: Any = {"include_usage": True} if include_usage else openai.NOT_GIVEN
    create = openai_client(served).chat.completions.with_streaming_response.create
    chunks: list[Any] = []
    error: openai.APIError | None = None
    with create(
        model=model, messages=[{"role": "user", "content": PROMPT}], stream=True, stream_options=options, **params
    ) as response:
        request_id = response.headers["x-request-id"]
        try:
            for chunk in response.parse():
                chunks.append(chunk)
        except openai.APIError as caught:  # the in-band error event that ends a broken stream
            error = caught
    return SdkStream(request_id, chunks, error)


def tokens(text: str) -> int:
    """margin's documented estimate without a tokenizer: one token per 4 UTF-8 bytes, rounded up."""
    return math.ceil(len(text.encode()) / 4)


# The prompt as margin estimates it: tokens(PROMPT) + 3 per message + 3 to prime the reply.
PROMPT_ESTIMATE = tokens(PROMPT) + 3 + 3  # = 20


def usd(per_million: Decimal) -> Decimal:
    return per_million / 1_000_000
