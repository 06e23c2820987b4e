"""Counters on Redis, shared by every replica, with a hard timeout on every call.

Each counter bucket is one string key `{prefix}c:{name}:{bucket}` holding an integer, with a time
to live running to the end of its window (relative to the gateway's clock), so Redis forgets old
windows by itself. A call that does not answer within `timeout_s` (connection refused, Redis
stopped, network gone) raises StorageError at once:
the limiter then applies the scope's declared fail-closed / fail-open policy.

Reservation intents live beside the counters (layout in `scripts.INTENT_LAYOUT`): recorded by the
reserve script itself, settled by FINISH, and visible to every replica, which is how a surviving
replica finds a dead one's reservations (`orphans`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from margin.storage.protocols import (
    HOLD_SUFFIX,
    Adjust,
    Charge,
    Intent,
    IntentState,
    Orphan,
    StorageError,
    Verdict,
)
from margin.storage.redis.client import bounded, open_client
from margin.storage.redis.scripts import ADJUST, FINISH, MARK, RESERVE, SYNC

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
        self._finish = self.client.register_script(FINISH)
        self._mark = self.client.register_script(MARK)

    def _ttl_ms(self, expires_at: float) -> str:
        return str(max(1000, int((expires_at - self.clock()) * 1000)))

    def key(self, name: str, bucket: int) -> str:
        return f"{self.prefix}{name}:{bucket}"

    async def _bounded(self, call: Awaitable[T]) -> T:
        return await bounded(call, self.timeout_s, StorageError)

    async def migrate(self) -> list[str]:
        return []

    async def reserve(self, charges: Sequence[Charge]) -> Verdict:
        return await self._reserve_with(charges, [])

    async def reserve_intent(self, charges: Sequence[Charge], intent: Intent) -> Verdict:
        ttl = self._ttl_ms(intent.expires_at)
        return await self._reserve_with(charges, [intent.id, intent.owner, repr(intent.sweep_at), intent.payload, ttl])

    async def _reserve_with(self, charges: Sequence[Charge], intent: list[str]) -> Verdict:
        args: list[Any] = [self.prefix, HOLD_SUFFIX, SYNCED_SUFFIX, len(charges)]
        for c in charges:
            hold = -1 if c.hold is None else c.hold
            ttl = self._ttl_ms(c.expires_at)
            args += [c.name, c.first, c.last, hold, 1 if c.sync else 0, str(c.amount), str(c.limit), ttl]
        args += intent
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

    async def finish(
        self, intent: str, owner: str, plans: Mapping[IntentState, Sequence[Adjust]], to: IntentState, keep_until: float
    ) -> IntentState | None:
        args: list[str] = [self.prefix, intent, owner, to, self._ttl_ms(keep_until), str(len(plans))]
        for state, adjustments in plans.items():
            args += [state, str(len(adjustments))]
            for a in adjustments:
                args += [f"{a.name}:{a.bucket}", str(a.delta), self._ttl_ms(a.expires_at)]
        found = await self._bounded(self._finish(keys=[], args=args))
        return _state(_text(found))

    async def mark_attempt(self, intent: str, index: int, mark: str) -> None:
        await self._bounded(self._mark(keys=[f"{self.prefix}i:{intent}"], args=[f"a{index}", mark]))

    async def heartbeat(self, owner: str, ttl_s: float) -> None:
        await self._bounded(self.client.set(f"{self.prefix}hb:{owner}", "1", px=max(1, int(ttl_s * 1000))))

    async def orphans(self, now: float, limit: int) -> list[Orphan]:
        """Open intents of owners without a heartbeat, and open intents whose lease has ended."""
        owners = [_text(o) for o in await self._bounded(self.client.smembers(f"{self.prefix}owners"))]
        found: list[Orphan] = []
        for owner in owners:
            if len(found) >= limit:
                break
            index = f"{self.prefix}io:{owner}"
            alive = await self._bounded(self.client.exists(f"{self.prefix}hb:{owner}"))
            high: float | str = now if alive else "+inf"
            ids = await self._bounded(self.client.zrangebyscore(index, "-inf", high, start=0, num=limit - len(found)))
            if not ids and not alive and not await self._bounded(self.client.zcard(index)):
                await self._bounded(self.client.srem(f"{self.prefix}owners", owner))  # a dead owner, all swept
            for raw in ids:
                orphan = await self._orphan(owner, index, _text(raw))
                if orphan is not None:
                    found.append(orphan)
        return found

    async def _orphan(self, owner: str, index: str, intent: str) -> Orphan | None:
        fields = await self._bounded(self.client.hgetall(f"{self.prefix}i:{intent}"))
        record = {_text(k): _text(v) for k, v in fields.items()}
        if record.get("s") != "open" or "p" not in record:
            await self._bounded(self.client.zrem(index, intent))  # settled or forgotten meanwhile
            return None
        score = await self._bounded(self.client.zscore(index, intent))
        attempts = sorted((k for k in record if k.startswith("a") and k[1:].isdigit()), key=lambda k: int(k[1:]))
        sweep_at = float(score) if score is not None else 0.0
        return Orphan(Intent(intent, owner, sweep_at, 0.0, record["p"]), tuple(record[k] for k in attempts))

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


def _state(text: str) -> IntentState | None:
    if text == "open":
        return "open"
    if text == "swept":
        return "swept"
    if text == "settled":
        return "settled"
    if text == "released":
        return "released"
    return None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
