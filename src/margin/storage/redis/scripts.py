"""The Lua scripts. Redis runs a script alone (no other command interleaves), which is what makes
check-and-reserve across several counters atomic on one Redis.

Amounts are passed as decimal strings and applied with INCRBY, so they stay exact integers (Lua
numbers are doubles: sums are exact below 2**53, i.e. $9M of nano-dollars per window)."""

# ARGV: key prefix, hold suffix, sync-marker suffix, n, then per charge: name, first, last, hold slot
# (-1: none), needs sync (0/1), amount, limit, time to live (ms). The script builds the bucket keys
# itself (`prefix .. name .. ':' .. bucket`, integers below 1e14 print as Python prints them): far
# fewer arguments to encode than passing every key, which is most of a call's cost in redis-py.
# Single Redis only (keys are not declared, so not for Redis Cluster).
# Returns {-1, 0} when all fit and were applied; {i, used} when charge i (0-based) does not fit;
# {-2, i} when charge i needs its sync marker (Redis lost the counter: sync it from the ledger first).
# Optionally, after the charges, an intent: id, owner, sweep_at, payload, time to live (ms). When
# the charges are applied the intent is recorded open in the same step (see INTENT_LAYOUT).
RESERVE = """
local prefix, hold_suffix, synced_suffix = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])
local function total(keys)
  local sum = 0
  if #keys == 0 then return 0 end
  for _, v in ipairs(redis.call('MGET', unpack(keys))) do
    if v then sum = sum + tonumber(v) end
  end
  return sum
end
local targets = {}
local a = 5
for i = 1, n do
  local name = ARGV[a]
  local first, last, hold = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local amount, limit = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  if ARGV[a + 4] == '1' and redis.call('EXISTS', prefix .. name .. synced_suffix .. ':' .. last) == 0 then
    return {-2, i - 1}
  end
  local keys = {}
  for b = first, last do keys[#keys + 1] = prefix .. name .. ':' .. b end
  local target = prefix .. name .. ':' .. last
  if hold >= 0 then
    keys[#keys + 1] = prefix .. name .. hold_suffix .. ':' .. (hold - 1)
    target = prefix .. name .. hold_suffix .. ':' .. hold
    keys[#keys + 1] = target
  end
  local used = total(keys)
  if amount > 0 and used + amount > limit then
    return {i - 1, used}
  end
  if amount > 0 then
    targets[#targets + 1] = {target, ARGV[a + 5], ARGV[a + 7]}
  end
  a = a + 8
end
for _, t in ipairs(targets) do
  redis.call('INCRBY', t[1], t[2])
  redis.call('PEXPIRE', t[1], t[3])
end
if ARGV[a] then
  local id, owner = ARGV[a], ARGV[a + 1]
  local key = prefix .. 'i:' .. id
  redis.call('HSET', key, 's', 'open', 'o', owner, 'p', ARGV[a + 3])
  redis.call('PEXPIRE', key, ARGV[a + 4])
  redis.call('ZADD', prefix .. 'io:' .. owner, ARGV[a + 2], id)
  redis.call('SADD', prefix .. 'owners', owner)
end
return {-1, 0}
"""

# KEYS: counters; ARGV: per key a signed delta and a time to live (ms). Results are clamped at zero:
# a settle that finds its hold already expired (or Redis restarted empty) must not go negative.
ADJUST = """
for i, key in ipairs(KEYS) do
  local delta, at = ARGV[2 * i - 1], ARGV[2 * i]
  local d = tonumber(delta)
  if d > 0 then
    redis.call('INCRBY', key, delta)
    redis.call('PEXPIRE', key, at)
  elseif d < 0 then
    local v = redis.call('GET', key)
    if v then
      if tonumber(v) + d <= 0 then
        redis.call('DEL', key)
      else
        redis.call('INCRBY', key, delta)
      end
    end
  end
end
return 0
"""

# KEYS: the window's spent buckets, then the sync marker; ARGV: floor, time to live (ms).
# Once per counter and window per Redis lifetime: raise the window's sum to the ledger's figure
# (never lower it) and set the marker. Concurrent syncs from several replicas apply once.
SYNC = """
local marker = KEYS[#KEYS]
if redis.call('EXISTS', marker) == 1 then
  return 0
end
local total = 0
for i = 1, #KEYS - 1 do
  local v = redis.call('GET', KEYS[i])
  if v then total = total + tonumber(v) end
end
local floor = tonumber(ARGV[1])
if floor > total then
  redis.call('INCRBY', KEYS[#KEYS - 1], string.format('%d', floor - total))
  redis.call('PEXPIRE', KEYS[#KEYS - 1], ARGV[2])
end
redis.call('SET', marker, '1', 'PX', ARGV[2])
return 1
"""

# INTENT_LAYOUT: `{prefix}i:{id}` is a hash: s (open | swept | released | settled), o (owner), p (payload, while
# open), a<index> (attempt marks). `{prefix}io:{owner}` is a sorted set of the owner's open intents
# scored by sweep_at; `{prefix}owners` the owners that have any; `{prefix}hb:{owner}` its heartbeat.

# ARGV: prefix, id, owner, to-state, time to live (ms), number of plans, then per plan: the state it
# applies to, the number of adjustments k, and k x (counter key suffix `name:bucket`, delta, ttl ms).
# Returns the state found ('' when the intent is unknown); applies the plan for that state if any.
# A settled intent is deleted: nothing can follow it, and a later finish then finds nothing to do.
FINISH = """
local prefix, id, owner, to, keep = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key = prefix .. 'i:' .. id
local state = redis.call('HGET', key, 's')
if not state then return '' end
local a, start, count = 7, nil, 0
for _ = 1, tonumber(ARGV[6]) do
  local k = tonumber(ARGV[a + 1])
  if ARGV[a] == state then start, count = a + 2, k end
  a = a + 2 + 3 * k
end
if not start then return state end
for i = 0, count - 1 do
  local counter, delta, ttl = prefix .. ARGV[start + 3 * i], ARGV[start + 3 * i + 1], ARGV[start + 3 * i + 2]
  local d = tonumber(delta)
  if d > 0 then
    redis.call('INCRBY', counter, delta)
    redis.call('PEXPIRE', counter, ttl)
  elseif d < 0 then
    local v = redis.call('GET', counter)
    if v then
      if tonumber(v) + d <= 0 then redis.call('DEL', counter) else redis.call('INCRBY', counter, delta) end
    end
  end
end
redis.call('DEL', key)
if to ~= 'settled' then
  redis.call('HSET', key, 's', to, 'o', owner)
  redis.call('PEXPIRE', key, keep)
end
redis.call('ZREM', prefix .. 'io:' .. owner, id)
return state
"""

# KEYS: the intent; ARGV: field (a<index>), mark. Only while the intent exists (no key without expiry).
MARK = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0
"""
