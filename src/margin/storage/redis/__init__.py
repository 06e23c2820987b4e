"""Redis counters (multi-replica budgets and rate limits); needs the `redis` extra (redis-py >= 5).

The only package that imports `redis` (tests/test_architecture.py). The response cache's Redis backend
lives with the other cache backends (margin.caching.backends.redis) and gets its client from
`client.open_client` here."""

from margin.storage.redis.counters import RedisCounters

__all__ = ["RedisCounters"]
