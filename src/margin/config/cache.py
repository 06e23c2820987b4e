"""The `cache:` section (stage ③, docs/caching.md): the exact cache, the semantic cache's
settings and its shared engine, and per-model-group overrides."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, FilePath

from margin.config.base import Strict


class SemanticCacheConfig(Strict):
    """The semantic cache of one route (or the defaults for all). Off unless switched on: a hit is
    served only when cosine >= `threshold` AND the guard agrees (numbers, negations, named entities,
    ordered pairs); between `verify_above` and `threshold` a configured verifier decides."""

    enabled: bool = False
    threshold: float = Field(0.975, gt=0, le=1, description="from a realistic held-out set (docs/caching.md)")
    verify_above: float | None = Field(None, gt=0, le=1, description="lower edge of the verifier band")
    guard: bool = True
    max_candidates: int = Field(4, ge=1, le=64)
    mode: Literal["serve", "shadow"] = Field("serve", description="shadow: grade would-be hits, serve none")
    shadow_floor: float = Field(0.8, gt=0, le=1, description="shadow mode records candidates from this cosine up")
    decision: Literal["cosine", "learned"] = Field("cosine", description="learned: a logistic model decides")
    min_probability: float = Field(0.967, gt=0, lt=1, description="decision learned: the least probability a hit needs")
    learned_model: FilePath | None = Field(None, description="decision learned: `calibrate --fit-learned` output")


class SemanticEngineConfig(Strict):
    """Shared machinery of the semantic cache: the embedder and its micro-batcher, the indexes."""

    embedder: Literal["minilm", "hashing"] = "minilm"
    batch_window_ms: float = Field(3.0, ge=0, le=100)
    max_batch: int = Field(32, ge=1, le=1024)
    workers: int = Field(
        2, ge=1, le=64, description="embedding threads (one core each); a burst is split among the idle ones"
    )
    ann_above: int = Field(20_000, ge=1, description="partitions larger than this use hnswlib when installed")
    sync_interval_s: float = Field(
        1.0, ge=0, description="how often a partition picks up entries other replicas added (shared backends)"
    )


class CacheRouteConfig(Strict):
    """Per-model-group overrides; unset fields inherit from the `cache:` section."""

    exact: bool | None = None
    ttl_s: float | None = Field(None, gt=0)
    cache_nondeterministic: bool | None = None
    semantic: SemanticCacheConfig | None = None


class CacheConfig(Strict):
    """Stage ③. Exact cache on for deterministic requests (temperature 0 or a seed), semantic off.

    Entries are always partitioned by tenant: the principal's key, team or org (`scope`)."""

    enabled: bool = True
    backend: Literal["memory", "sqlite", "redis"] = Field(
        "sqlite", description="redis: one cache shared by every replica (needs the `redis:` section)"
    )
    path: str = Field("{data_dir}/cache.db", description="SQLite file of the sqlite backend")
    scope: Literal["key", "team", "org"] = "key"
    exact: bool = True
    cache_nondeterministic: bool = Field(False, description="cache sampled answers without a per-request opt-in")
    ttl_s: float = Field(86_400.0, gt=0)
    max_entries: int = Field(100_000, ge=1)
    max_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    coalesce: bool = True
    coalesce_wait_s: float = Field(120.0, gt=0, description="longest a follower waits for the shared call")
    timeout_s: float = Field(0.25, gt=0, description="a slower cache lookup is skipped (fail open)")
    semantic: SemanticCacheConfig = SemanticCacheConfig()
    engine: SemanticEngineConfig = SemanticEngineConfig()
    shadow_path: str = Field("{data_dir}/cache-shadow.jsonl", description="the record of routes in shadow mode")
    routes: dict[str, CacheRouteConfig] = Field(default_factory=dict, description="keyed by model group")
