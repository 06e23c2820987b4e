"""Circuit-breaker state in Redis, shared by every replica.

Each deployment has a hash (state, opened_at, probe_until, times_opened, last_error) and a sorted
set of failure times. Every operation is one Lua script using the server's TIME, so replicas agree
on one state without synchronised clocks. Calls time out fast; the caller decides what a Redis
failure means (margin falls back to each replica's own breaker).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from margin.storage.protocols import StorageError
from margin.storage.redis.client import bounded, open_client

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

ADMIT = (
    _NOW
    + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then return 'allow' end
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0')
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now < opened + tonumber(ARGV[1]) or now < probe_until then return 'reject' end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', tostring(now + tonumber(ARGV[1])))
return 'probe'
"""
)

# ARGV: outcome, probe (0|1), window, failures, last_error, ttl seconds, a unique member suffix
RECORD = (
    _NOW
    + """
local function open()
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', tostring(now), 'probe_until', '0')
  redis.call('HINCRBY', KEYS[1], 'times_opened', 1)
  redis.call('DEL', KEYS[2])
end
local outcome = ARGV[1]
if outcome == 'failure' and ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'last_error', ARGV[5]) end
if ARGV[2] == '1' then
  if outcome == 'success' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'probe_until', '0')
    redis.call('DEL', KEYS[2])
  elseif outcome == 'failure' then open()
  else redis.call('HSET', KEYS[1], 'probe_until', '0') end
else
  local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
  if state == 'closed' and outcome == 'failure' then
    redis.call('ZADD', KEYS[2], now, tostring(now) .. ':' .. ARGV[7])
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
    if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then open() end
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
"""
)

# ARGV: window. Returns {now, state, opened_at, probe_until, times_opened, last_error, failures}
READ = (
    _NOW
    + """
local h = redis.call('HMGET', KEYS[1], 'state', 'opened_at', 'probe_until', 'times_opened', 'last_error')
local failures = redis.call('ZCOUNT', KEYS[2], '(' .. tostring(now - tonumber(ARGV[1])), '+inf')
return {tostring(now), h[1] or 'closed', h[2] or '0', h[3] or '0', h[4] or '0', h[5] or '', failures}
"""
)


class RedisCircuitScripts:
    """The raw operations; `margin.resilience.shared.SharedCircuits` turns them into a CircuitStore."""

    def __init__(self, url: str, *, prefix: str = "margin:", timeout_s: float = 0.1) -> None:
        self.prefix = prefix + "circuit:"
        self.timeout_s = timeout_s
        self.client: aioredis.Redis = open_client(url, timeout_s=timeout_s, decode_responses=True)
        self._admit = self.client.register_script(ADMIT)
        self._record = self.client.register_script(RECORD)
        self._read = self.client.register_script(READ)
        self._sequence = 0

    def _keys(self, deployment: str) -> list[str]:
        return [f"{self.prefix}{deployment}", f"{self.prefix}{deployment}:failures"]

    async def _bounded(self, call: Any) -> Any:
        return await bounded(call, self.timeout_s, StorageError)

    async def admit(self, deployment: str, cooldown: float) -> str:
        return str(await self._bounded(self._admit(keys=self._keys(deployment), args=[cooldown])))

    async def record(
        self, deployment: str, *, outcome: str, probe: bool, window: float, failures: int, error: str, ttl_s: int
    ) -> None:
        self._sequence += 1
        args = [outcome, 1 if probe else 0, window, failures, error[:300], ttl_s, f"{id(self)}:{self._sequence}"]
        await self._bounded(self._record(keys=self._keys(deployment), args=args))

    async def read(self, deployment: str, window: float) -> Sequence[str]:
        found: Sequence[str] = await self._bounded(self._read(keys=self._keys(deployment), args=[window]))
        return [str(v) for v in found]

    async def close(self) -> None:
        await self.client.aclose()
