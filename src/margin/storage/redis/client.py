"""The one way margin talks to Redis: a client whose every call is bounded by a short timeout and
never retried by the driver (the caller's policy decides what a slow or absent Redis means), and a
wrapper that turns any failure into the caller's error type."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry  # the sync Retry is converted with a warning by redis-py >= 6
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

T = TypeVar("T")
RedisClient = aioredis.Redis  # for modules outside storage/redis/ that hold a client (the cache backend)


def open_client(url: str, *, timeout_s: float, decode_responses: bool = False) -> aioredis.Redis:
    """No I/O: the connection is made on the first call."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),  # a retry loop would run past the caller's timeout
        health_check_interval=0,
        decode_responses=decode_responses,
    )


async def bounded(call: Awaitable[T], timeout_s: float, error: type[Exception]) -> T:
    """`call`, or `error` when Redis fails or does not answer within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            return await call
    except (RedisError, OSError, TimeoutError) as exc:
        raise error(f"redis: {type(exc).__name__}: {exc}") from exc
