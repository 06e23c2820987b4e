"""Counters on Redis, shared by every replica, with a hard timeout on every call.

Each counter bucket is one string key `{prefix}c:{name}:{bucket}` holding an integer, with a time
to live running to the end of its window (relative to the gateway's clock), so Redis forgets old
windows by itself. A call that does not answer within `timeout_s` (connection refused, Redis
stopped, network gone) raises StorageError at once:
the limiter then applies the scope's declared fail-closed / fail-open policy."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from margin.storage.protocols import HOLD_SUFFIX, Adjust, Charge, StorageError, Verdict
from margin.storage.redis.client import bounded, open_client
from margin.storage.redis.scripts import ADJUST, RESERVE, SYNC

T = TypeVar("T")
SYNCED_SUFFIX = "#synced"  # marker: this counter holds the ledger's figure for its window in this Redis


class RedisCounters:
    def __init__(
        self, url: str, *, prefix: str = "margin:", timeout_s: float = 0.1, clock: Callable[[], float] = time.time
    ) -> None:
        self.prefix = prefix + "c:"
        self.clock = clock  # the gateway's clock: expiries are relative to it, so a frozen clock works
        self.timeout_s = timeout_s
        self.client: aioredis.Redis = open_client(url, timeout_s=timeout_s)
        self._reserve = self.client.register_script(RESERVE)
        self._adjust = self.client.register_script(ADJUST)
        self._sync = self.client.register_script(SYNC)

    def _ttl_ms(self, expires_at: float) -> str:
        return str(max(1000, int((expires_at - self.clock()) * 1000)))

    def key(self, name: str, bucket: int) -> str:
        return f"{self.prefix}{name}:{bucket}"

    async def _bounded(self, call: Awaitable[T]) -> T:
        return await bounded(call, self.timeout_s, StorageError)

    async def migrate(self) -> list[str]:
        return []

    async def reserve(self, charges: Sequence[Charge]) -> Verdict:
        args: list[Any] = [self.prefix, HOLD_SUFFIX, SYNCED_SUFFIX, len(charges)]
        for c in charges:
            hold = -1 if c.hold is None else c.hold
            ttl = self._ttl_ms(c.expires_at)
            args += [c.name, c.first, c.last, hold, 1 if c.sync else 0, str(c.amount), str(c.limit), ttl]
        code, value = await self._bounded(self._reserve(keys=[], args=args))
        if int(code) == -2:
            return Verdict(unsynced=int(value))
        return Verdict() if int(code) < 0 else Verdict(failed=int(code), used=int(value))

    async def sync(self, name: str, first: int, last: int, floor: int, expires_at: float) -> None:
        keys = [self.key(name, b) for b in range(first, last + 1)] + [self.key(name + SYNCED_SUFFIX, last)]
        await self._bounded(self._sync(keys=keys, args=[str(floor), self._ttl_ms(expires_at)]))

    async def adjust(self, adjustments: Sequence[Adjust]) -> None:
        if not adjustments:
            return
        keys = [self.key(a.name, a.bucket) for a in adjustments]
        args: list[str] = []
        for a in adjustments:
            args += [str(a.delta), self._ttl_ms(a.expires_at)]
        await self._bounded(self._adjust(keys=keys, args=args))

    async def read(self, name: str, first: int, last: int) -> int:
        if last < first:
            return 0
        values = await self._bounded(self.client.mget([self.key(name, b) for b in range(first, last + 1)]))
        return sum(int(v) for v in values if v is not None)

    async def prune(self, now: float) -> int:
        return 0  # every key carries its own expiry

    async def health(self) -> bool:
        try:
            return bool(await self._bounded(self.client.ping()))
        except StorageError:
            return False

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except (RedisError, OSError):
            return
