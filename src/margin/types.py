"""Value objects shared by every layer: requests, results, usage, money, principals.

The internal request and chunk shapes are OpenAI's chat-completions shapes (the lingua franca of
LLM servers): adapters for other protocols translate at their edge, so the pipeline never
branches on a provider.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, getcontext, localcontext
from typing import Any, Literal

UsageSource = Literal["reported", "estimated"]
RequestKind = Literal["chat", "completion"]

JSON = dict[str, Any]

# The disjoint usage buckets, in the ledger's column order: the fields of `Usage`, the token columns of
# a ledger row, and (with gpu_time) the amounts of a `Cost`. The one definition the others derive from.
USAGE_BUCKETS = (
    "input_uncached",
    "input_cache_read",
    "input_cache_write",
    "output",
    "output_reasoning",
    "input_audio",
    "output_audio",
    "input_image",
)


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of US dollars. Never a float: budgets are compared to the micro-dollar."""

    usd: Decimal = Decimal(0)

    def __add__(self, other: Money) -> Money:
        return Money(self.usd + other.usd)

    def __sub__(self, other: Money) -> Money:
        return Money(self.usd - other.usd)

    @property
    def micro_usd(self) -> int:
        """Whole micro-dollars, rounded half-up: the unit of counters and metrics."""
        return int((self.usd * 1_000_000).to_integral_value(rounding="ROUND_HALF_UP"))

    @classmethod
    def parse(cls, value: str | int | Decimal) -> Money:
        return cls(Decimal(str(value)))

    def __str__(self) -> str:
        return f"${self.usd:f}"


ZERO = Money()


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage in disjoint buckets, so that each bucket is priced once.

    `output` excludes reasoning tokens and `input_uncached` excludes cache reads and writes:
    the sum of the buckets is the total the provider counted.

    `source` is "reported" only when every figure is the upstream's own; `estimated_buckets` names
    the buckets whose figure is margin's estimate (or, on a report still in progress, a floor the
    upstream has not confirmed yet: see `margin.metering.usage_fill`).
    """

    input_uncached: int = 0
    input_cache_read: int = 0
    input_cache_write: int = 0
    output: int = 0
    output_reasoning: int = 0
    input_audio: int = 0
    output_audio: int = 0
    input_image: int = 0
    source: UsageSource = "reported"
    estimated_buckets: tuple[str, ...] = ()

    @property
    def estimated(self) -> tuple[str, ...]:
        """The buckets whose figure is an estimate: those named, or, for a usage estimated as a
        whole without naming them, the two an estimate fills (prompt and answer)."""
        if self.estimated_buckets or self.source == "reported":
            return self.estimated_buckets
        return ("input_uncached", "output")

    @property
    def input_total(self) -> int:
        return (
            self.input_uncached + self.input_cache_read + self.input_cache_write + self.input_audio + (self.input_image)
        )

    @property
    def output_total(self) -> int:
        return self.output + self.output_reasoning + self.output_audio

    @property
    def total(self) -> int:
        return self.input_total + self.output_total

    def to_openai(self) -> JSON:
        """The `usage` object of an OpenAI response."""
        body: JSON = {
            "prompt_tokens": self.input_total,
            "completion_tokens": self.output_total,
            "total_tokens": self.total,
        }
        if self.input_cache_read:
            body["prompt_tokens_details"] = {"cached_tokens": self.input_cache_read}
        if self.output_reasoning:
            body["completion_tokens_details"] = {"reasoning_tokens": self.output_reasoning}
        return body


PriceBasis = Literal["catalog", "unknown", "declared_zero", "gpu_time"]
# Digits of Decimal precision for money arithmetic: no product or sum metering sees is ever rounded
# (tokens are integers below 10**12, prices have at most a dozen significant digits).
MONEY_PRECISION = 60
COST_BUCKETS = (*USAGE_BUCKETS, "gpu_time")  # a Cost has one amount per usage bucket, and GPU time


@dataclass(frozen=True, slots=True)
class Cost:
    """The exact cost of one upstream attempt, per bucket, in USD (priced by `margin.metering`).

    `basis` says where the figure comes from: a catalog (or override) price, an unknown price
    (amount 0 but flagged, never a silent zero), a price the operator declared to be zero, or
    GPU time. `price_version` is recorded with the ledger row so costs can be recomputed.
    """

    input_uncached: Decimal = Decimal(0)
    input_cache_read: Decimal = Decimal(0)
    input_cache_write: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    output_reasoning: Decimal = Decimal(0)
    input_audio: Decimal = Decimal(0)
    output_audio: Decimal = Decimal(0)
    input_image: Decimal = Decimal(0)
    gpu_time: Decimal = Decimal(0)
    price_version: str = ""
    model: str = ""
    basis: PriceBasis = "catalog"
    long_context: bool = False  # the whole request was priced at a long-context tier
    batch: bool = False  # a batch discount was applied
    estimated_usage: bool = False  # the usage was estimated by margin, not reported upstream
    assumed_modality_price: bool = False  # audio/image tokens priced at the text rate
    total: Money = field(init=False)

    def __post_init__(self) -> None:
        if getcontext().prec >= MONEY_PRECISION:  # already exact (price_usage builds Costs in its context)
            amount = self._sum()
        else:
            with localcontext(prec=MONEY_PRECISION):
                amount = self._sum()
        object.__setattr__(self, "total", Money(amount))

    def _sum(self) -> Decimal:
        return (
            self.input_uncached
            + self.input_cache_read
            + self.input_cache_write
            + self.output
            + self.output_reasoning
            + self.input_audio
            + self.output_audio
            + self.input_image
            + self.gpu_time
        )

    @property
    def price_unknown(self) -> bool:
        return self.basis == "unknown"

    def buckets(self) -> dict[str, Decimal]:
        """Per-bucket amounts, for ledger rows."""
        return {name: getattr(self, name) for name in COST_BUCKETS}


@dataclass(slots=True)
class ChatRequest:
    """A chat (or legacy text completion) request after validation.

    `params` holds every other OpenAI body field, known or not, so that OpenAI-compatible
    upstreams receive what the client sent instead of a silently trimmed copy.
    """

    model: str
    messages: list[JSON]
    params: JSON = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    kind: RequestKind = "chat"
    prompt: str | list[Any] | None = None

    @property
    def max_output_tokens(self) -> int | None:
        value = self.params.get("max_completion_tokens", self.params.get("max_tokens"))
        return value if isinstance(value, int) else None

    @property
    def n(self) -> int:
        value = self.params.get("n", 1)
        return value if isinstance(value, int) else 1


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    inputs: list[str] | list[list[int]]
    params: JSON = field(default_factory=dict)


@dataclass(slots=True)
class ChatResult:
    """A complete (non-streamed) answer. `body` is the OpenAI response object sent to the client.

    `usage` is None when the upstream reported none; the meter then estimates it."""

    body: JSON
    usage: Usage | None
    model: str


@dataclass(slots=True)
class Chunk:
    """One streamed event in OpenAI `chat.completion.chunk` (or `text_completion`) shape.

    `usage` is set on the chunk that carried the upstream's usage report. `usage_so_far` is set
    where an upstream reports part of its usage before the end (Anthropic's `message_start` carries
    the input figures): what it has reported up to this chunk, its open buckets named in
    `estimated_buckets`. It never goes to the client as part of `body`.
    """

    body: JSON
    usage: Usage | None = None
    usage_so_far: Usage | None = None


@dataclass(slots=True)
class EmbeddingResult:
    body: JSON
    usage: Usage | None
    model: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking. Anonymous in the embedded default until the first key exists."""

    key_id: str = "anonymous"
    org: str = "default"
    team: str = "default"
    user: str = "default"
    tags: tuple[str, ...] = ()
    endpoint_class: Literal["interactive", "batch"] = "interactive"
    allowed_models: tuple[str, ...] = ()
    # Deployment cost_ranks it may use; empty: all (enforced by stage ②, which narrows the route).
    allowed_cost_ranks: tuple[int, ...] = ()

    def may_use(self, model_group: str) -> bool:
        return not self.allowed_models or model_group in self.allowed_models


@dataclass(frozen=True, slots=True)
class TierStep:
    """One tier of a tiered model group: its name and the deployments that serve it, in order."""

    name: str
    deployments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Which deployments to try, in order, and why (surfaced in the `x-margin-route` header).

    For tiered groups: `tier` is the tier chosen, `tiers` all the group's tiers (cheap first, to
    label whichever answers), `escalation` the tiers a cascade moves up to when a check rejects an
    answer, and `premium` the deployment that prices the all-premium counterfactual."""

    model_group: str
    deployments: tuple[str, ...]
    policy: str = "static"
    reason: str = ""
    tier: str | None = None
    tiers: tuple[TierStep, ...] = ()
    escalation: tuple[TierStep, ...] = ()
    premium: str | None = None
    elapsed_ms: float = 0.0  # time the route stage took to decide

    def tier_of(self, deployment: str | None) -> str | None:
        """The name of the tier `deployment` belongs to (None for untiered groups or fallbacks)."""
        return next((t.name for t in self.tiers if deployment in t.deployments), None)


AttemptStatus = Literal["ok", "error", "cancelled"]


@dataclass(slots=True)
class UpstreamClock:
    """How long one attempt waited on its upstream, as the adapter saw it (`time.perf_counter`
    seconds): from just before it began writing the request to just after it read the upstream's
    latest byte (or saw the upstream fail). Everything outside that span (parsing, routing,
    serialising, event-loop queueing before the write and after the read) is the gateway's own time.
    """

    sent_at: float | None = None
    read_at: float | None = None
    # W3C trace context for the upstream call (`traceparent`...), set when the request is traced.
    trace_headers: dict[str, str] | None = None

    def seconds(self) -> float | None:
        """None until the adapter has marked both ends."""
        if self.sent_at is None or self.read_at is None:
            return None
        return max(0.0, self.read_at - self.sent_at)


@dataclass(slots=True)
class Attempt:
    """One call to one upstream deployment: the unit of the ledger."""

    request_id: str
    index: int
    deployment: str
    model: str
    cost_rank: int | None = None  # the deployment's
    status: AttemptStatus = "ok"
    error_class: str | None = None
    usage: Usage | None = None
    started_at: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cost: Cost | None = None
    gpu_seconds: float = 0.0
    upstream: UpstreamClock = field(default_factory=UpstreamClock)  # marked by the provider adapter

    def upstream_seconds(self) -> float:
        """Time spent on the upstream so far: the adapter's own measure when it marks one; otherwise
        (an adapter that marks nothing) the attempt's time to its first chunk or its whole latency."""
        measured = self.upstream.seconds()
        if measured is not None:
            return measured
        if self.latency_ms:
            return self.latency_ms / 1000
        return (self.ttft_ms or 0.0) / 1000
