"""Lua scripts of the Redis response cache. Each runs alone on the server, so an entry, its indexes,
its LRU and expiry ranks and the byte count always change together, whichever replica writes.

Layout under the cache prefix P (ARGV[1] of every script):
  P e:<key>         hash: tenant, model, tags, created, expires, payload (the answer)
  P v:<key>         hash: partition, text, vec, expires (the question's vector, semantic entries only)
  P meta            hash key -> JSON {size, model, partition, indexes}: what dropping a key must undo,
                    kept apart so bookkeeping stays exact even if Redis itself evicted the e: hash
  P keys            zset key -> 0 (lexical order: key-prefix invalidation is a range)
  P lru             zset key -> last use (gateway clock)
  P exp             zset key -> expiry (gateway clock)
  P bytes, P nvec   integers; P bymodel hash model -> entries
  P t:<tenant>, P m:<model or model@...>, P g:<tag>: sets of keys (the invalidation selectors)
  P vp:<partition>  set of keys with a vector; P vs:<partition> stream of keys added (replicas tail it)
  P vn:<partition>  sequence number of the last stream entry (a gap in it means the stream was trimmed)

Times come from the gateway's clock as arguments, like the limit counters, so a frozen test clock
works and replicas agree with their own ledgers.
"""

_DROP = """
local P = ARGV[1]
local function drop(key)
  local raw = redis.call('HGET', P .. 'meta', key)
  redis.call('ZREM', P .. 'keys', key)
  redis.call('ZREM', P .. 'lru', key)
  redis.call('ZREM', P .. 'exp', key)
  redis.call('DEL', P .. 'e:' .. key, P .. 'v:' .. key)
  if not raw then return 0 end
  local meta = cjson.decode(raw)
  redis.call('HDEL', P .. 'meta', key)
  redis.call('DECRBY', P .. 'bytes', meta.size)
  if redis.call('HINCRBY', P .. 'bymodel', meta.model, -1) <= 0 then redis.call('HDEL', P .. 'bymodel', meta.model) end
  for _, index in ipairs(meta.indexes) do redis.call('SREM', P .. index, key) end
  if meta.partition ~= '' then
    redis.call('SREM', P .. 'vp:' .. meta.partition, key)
    redis.call('DECR', P .. 'nvec')
  end
  return 1
end
local function sweep(now, dropped)
  for _, key in ipairs(redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', now, 'LIMIT', 0, 256)) do
    drop(key)
    dropped[#dropped + 1] = key
  end
end
"""

# ARGV: P, key, now, expires, safety ttl (ms), max entries, max bytes, stream length, size, tenant,
# model, tags (JSON), created, payload, indexes (JSON), partition ('' if none), text, vector bytes.
# Returns the keys dropped to make room (expired first, then least recently used).
PUT = (
    _DROP
    + """
local key, now, expires, ttl = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local max_entries, max_bytes, stream_len, size = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
local model, indexes, partition = ARGV[11], ARGV[15], ARGV[16]
drop(key)
local dropped = {}
sweep(now, dropped)
local e = P .. 'e:' .. key
redis.call('HSET', e, 'tenant', ARGV[10], 'model', model, 'tags', ARGV[12], 'created', ARGV[13],
  'expires', expires, 'payload', ARGV[14])
redis.call('PEXPIRE', e, ttl)
for _, index in ipairs(cjson.decode(indexes)) do redis.call('SADD', P .. index, key) end
redis.call('HSET', P .. 'meta', key, cjson.encode({size = size, model = model, partition = partition,
  indexes = cjson.decode(indexes)}))
redis.call('INCRBY', P .. 'bytes', size)
redis.call('HINCRBY', P .. 'bymodel', model, 1)
redis.call('ZADD', P .. 'keys', 0, key)
redis.call('ZADD', P .. 'lru', now, key)
redis.call('ZADD', P .. 'exp', expires, key)
if partition ~= '' then
  local v = P .. 'v:' .. key
  redis.call('HSET', v, 'partition', partition, 'text', ARGV[17], 'vec', ARGV[18], 'expires', expires)
  redis.call('PEXPIRE', v, ttl)
  redis.call('SADD', P .. 'vp:' .. partition, key)
  redis.call('INCR', P .. 'nvec')
  local n = redis.call('INCR', P .. 'vn:' .. partition)
  redis.call('XADD', P .. 'vs:' .. partition, 'MAXLEN', '~', stream_len, '*', 'k', key, 'n', n)
end
-- At most 256 evictions per write: after a limit is lowered the cache shrinks over the next writes
-- instead of in one long script that would stall every other client of this Redis.
local evicted = 0
while redis.call('ZCARD', P .. 'keys') > max_entries or tonumber(redis.call('GET', P .. 'bytes') or '0') > max_bytes do
  local oldest = redis.call('ZRANGE', P .. 'lru', 0, 0)
  if #oldest == 0 or evicted >= 256 then break end
  evicted = evicted + 1
  drop(oldest[1])
  dropped[#dropped + 1] = oldest[1]
end
return dropped
"""
)

# ARGV: P, key, now. Returns {tenant, model, tags, created, expires, payload} or nil; marks it used.
GET = (
    _DROP
    + """
local key, now = ARGV[2], tonumber(ARGV[3])
local fields = redis.call('HMGET', P .. 'e:' .. key, 'tenant', 'model', 'tags', 'created', 'expires', 'payload')
if not fields[1] then
  if redis.call('ZSCORE', P .. 'keys', key) then drop(key) end
  return nil
end
if tonumber(fields[5]) <= now then
  drop(key)
  return nil
end
redis.call('ZADD', P .. 'lru', 'XX', now, key)
return fields
"""
)

# ARGV: P, then the keys. Returns how many existed.
DELETE = (
    _DROP
    + """
local n = 0
for i = 2, #ARGV do n = n + drop(ARGV[i]) end
return n
"""
)

# ARGV: P, tenant, model, tag, key prefix ('' = not selected), then candidate keys (read by the
# caller from the narrowest selector, a chunk at a time: dropping 100k entries in one script would
# stall every replica's cache, limit and circuit calls on this Redis). Each candidate must still be
# live and pass every selector. Returns the dropped keys.
INVALIDATE = (
    _DROP
    + """
local tenant, model, tag, prefix = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local function selected(key)
  if not redis.call('ZSCORE', P .. 'keys', key) then return false end
  if tenant ~= '' and redis.call('SISMEMBER', P .. 't:' .. tenant, key) == 0 then return false end
  if model ~= '' and redis.call('SISMEMBER', P .. 'm:' .. model, key) == 0 then return false end
  if tag ~= '' and redis.call('SISMEMBER', P .. 'g:' .. tag, key) == 0 then return false end
  return prefix == '' or string.sub(key, 1, #prefix) == prefix
end
local dropped = {}
for i = 6, #ARGV do
  if selected(ARGV[i]) then
    drop(ARGV[i])
    dropped[#dropped + 1] = ARGV[i]
  end
end
return dropped
"""
)

# ARGV: P, partition, cursor id ('' = just tell me the head), cursor sequence, max records.
# Returns {status, id, sequence, key1, text1, vec1, expires1, ...}; status 'reset' when entries after
# the cursor were trimmed away (the caller reloads the partition), 'more' when there may be more.
CHANGES = """
local P, partition, cursor, seq, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local stream = P .. 'vs:' .. partition
if cursor == '' then
  local head = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #head == 0 then return {'ok', '0-0', '0'} end
  return {'ok', head[1][1], head[1][2][4]}
end
local entries = redis.call('XRANGE', stream, '(' .. cursor, '+', 'COUNT', count)
if #entries == 0 then return {'ok', cursor, tostring(seq)} end
if tonumber(entries[1][2][4]) ~= seq + 1 then return {'reset', cursor, tostring(seq)} end
local last = entries[#entries]
local out = {#entries == count and 'more' or 'ok', last[1], last[2][4]}
for _, entry in ipairs(entries) do
  local key = entry[2][2]
  local v = redis.call('HMGET', P .. 'v:' .. key, 'text', 'vec', 'expires')
  if v[1] then
    out[#out + 1] = key
    out[#out + 1] = v[1]
    out[#out + 1] = v[2]
    out[#out + 1] = v[3]
  end
end
return out
"""
