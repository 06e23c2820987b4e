"""Every response-cache backend, behind one protocol (`margin.caching.backend.CacheBackend`):
`memory`, `sqlite` (tables from `margin.storage.migrations.SQLITE_CACHE`) and `redis` (shared by
replicas; it reaches the driver through `margin.storage.redis.client`). Also the one place that picks
one from the configuration (the gateway, `margin cache` and `margin migrate` share it)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from margin.caching.backend import CacheBackend
from margin.caching.backends.memory import MemoryCacheBackend
from margin.caching.backends.sqlite import SqliteCacheBackend
from margin.config.limits import RedisConfig
from margin.config.model import CacheConfig
from margin.errors import ConfigError


def sqlite_cache_file(config: CacheConfig, data_dir: Path) -> Path:
    """The file of the sqlite backend: `cache.path` with `{data_dir}` expanded."""
    return Path(config.path.format(data_dir=data_dir))


def open_backend(
    config: CacheConfig, *, data_dir: Path, redis: RedisConfig | None, clock: Callable[[], float] = time.time
) -> CacheBackend:
    """The configured backend. No I/O: files open and connections are made on first use."""
    limits = {"max_entries": config.max_entries, "max_bytes": config.max_bytes}
    if config.backend == "memory":
        return MemoryCacheBackend(clock=clock, **limits)
    if config.backend == "sqlite":
        return SqliteCacheBackend(sqlite_cache_file(config, data_dir), clock=clock, **limits)
    if redis is None:  # the config model refuses this; kept for callers that build configs by hand
        raise ConfigError("cache.backend: redis needs a `redis:` section")
    try:
        from margin.caching.backends.redis import RedisCacheBackend
    except ImportError as error:
        hint = "pip install 'margin[redis]'"
        raise ConfigError(f"cache.backend: redis, but its driver is missing ({error.name}): {hint}") from None
    url = redis.url.resolve()
    if not url:
        raise ConfigError("redis.url is empty (is its environment variable set?)")
    return RedisCacheBackend(url, prefix=redis.prefix, timeout_s=config.timeout_s, clock=clock, **limits)
