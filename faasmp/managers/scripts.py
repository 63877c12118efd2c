"""Lua scripts of the manager objects."""

from __future__ import annotations

# ---------------------------------------------------------------------------
# Lua scripts.  KEYS[1] is always the manager's key (a SET naming every key of
# its objects, plus an '@auth:' member); ARGV[1] the TTL in ms.  A script
# returns the integer -1 when the manager is gone.
# ---------------------------------------------------------------------------

_PRELUDE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local ttl = ARGV[1]
redis.call('PEXPIRE', KEYS[1], ttl)
local function touch(k) redis.call('PEXPIRE', k, ttl) end
local function pushall(k, t, from)
  for i = from, #t, 1000 do redis.call('RPUSH', k, unpack(t, i, math.min(i + 999, #t))) end
end
"""

_REGISTER = (
    _PRELUDE
    + """
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
return 1
"""
)

_MGR_START = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SADD', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

_MGR_CONNECT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 0 then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# Delete every key of the manager's objects, the manager key, and wake joiners.
_MGR_SHUTDOWN = """
local members = redis.call('SMEMBERS', KEYS[1])
local ks = {}
for _, m in ipairs(members) do
  if string.sub(m, 1, 1) ~= '@' then ks[#ks + 1] = m end
end
for i = 1, #ks, 500 do redis.call('DEL', unpack(ks, i, math.min(i + 499, #ks))) end
redis.call('DEL', KEYS[1])
redis.call('RPUSH', KEYS[2], 1)
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return #ks
"""

# -- dict: KEYS = manager, hash, order zset -------------------------------
_D_KEYS = _PRELUDE + "return redis.call('ZRANGE', KEYS[3], 0, -1)"
_D_NEXT_SCORE = """
local function next_score()
  local top = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if top[2] then return tonumber(top[2]) + 1 end
  return 0
end
"""
_D_SET = (
    _PRELUDE
    + _D_NEXT_SCORE
    + """
local s = nil
for i = 2, #ARGV, 2 do
  if redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    if s == nil then s = next_score() end
    redis.call('ZADD', KEYS[3], s, ARGV[i])
    s = s + 1
  end
end
touch(KEYS[2]) touch(KEYS[3])
return 1
"""
)
_D_SETDEFAULT = (
    _PRELUDE
    + _D_NEXT_SCORE
    + """
local inserted = redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
if inserted == 1 then redis.call('ZADD', KEYS[3], next_score(), ARGV[2]) end
touch(KEYS[2]) touch(KEYS[3])
if inserted == 1 then return 1 end
return redis.call('HGET', KEYS[2], ARGV[2])
"""
)
_D_POP = (
    _PRELUDE
    + """
local v = redis.call('HGET', KEYS[2], ARGV[2])
if v then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
return v
"""
)
_D_POPITEM = (
    _PRELUDE
    + """
local top = redis.call('ZREVRANGE', KEYS[3], 0, 0)
if not top[1] then return 0 end
local v = redis.call('HGET', KEYS[2], top[1])
redis.call('HDEL', KEYS[2], top[1])
redis.call('ZREM', KEYS[3], top[1])
return {top[1], v}
"""
)
_D_ITEMS = (
    _PRELUDE
    + """
local f = redis.call('ZRANGE', KEYS[3], 0, -1)
local v = {}
for i = 1, #f, 1000 do
  local part = redis.call('HMGET', KEYS[2], unpack(f, i, math.min(i + 999, #f)))
  for j = 1, #part do v[#v + 1] = part[j] end
end
return {f, v}
"""
)
_D_CLEAR = _PRELUDE + "redis.call('DEL', KEYS[2], KEYS[3]) return 1"

# -- list: KEYS = manager, list, version ------------------------------------
_TOMB = "\\0faasmp:tombstone"  # shorter than any signed payload: never a real element
_L_BUMP = """
local function bump()
  redis.call('INCR', KEYS[3])
  touch(KEYS[3]) touch(KEYS[2])
end
"""
_L_PUSH = (
    _PRELUDE
    + _L_BUMP
    + """
pushall(KEYS[2], ARGV, 2)
bump()
return redis.call('LLEN', KEYS[2])
"""
)
_L_RANGE = (
    _PRELUDE
    + """
local n = redis.call('LLEN', KEYS[2])
local function norm(v, default)
  if v == '' then return default end
  v = tonumber(v)
  if v < 0 then
    v = v + n
    if v < 0 then v = 0 end
  elseif v > n then
    v = n
  end
  return v
end
local s = norm(ARGV[2], 0)
local e = norm(ARGV[3], n)
touch(KEYS[2]) touch(KEYS[3])
if s >= e then return {} end
return redis.call('LRANGE', KEYS[2], s, e - 1)
"""
)
_L_SET = (
    _PRELUDE
    + _L_BUMP
    + """
local n = redis.call('LLEN', KEYS[2])
local i = tonumber(ARGV[2])
if i < 0 then i = i + n end
if i < 0 or i >= n then return -2 end
redis.call('LSET', KEYS[2], i, ARGV[3])
bump()
return 1
"""
)
_L_POP = (
    _PRELUDE
    + _L_BUMP
    + f"""
local n = redis.call('LLEN', KEYS[2])
if n == 0 then return -3 end
local i = tonumber(ARGV[2])
if i < 0 then i = i + n end
if i < 0 or i >= n then return -2 end
local v
if i == n - 1 then
  v = redis.call('RPOP', KEYS[2])
elseif i == 0 then
  v = redis.call('LPOP', KEYS[2])
else
  v = redis.call('LINDEX', KEYS[2], i)
  redis.call('LSET', KEYS[2], i, "{_TOMB}")
  redis.call('LREM', KEYS[2], 1, "{_TOMB}")
end
bump()
return v
"""
)
_L_INSERT = (
    _PRELUDE
    + _L_BUMP
    + f"""
local n = redis.call('LLEN', KEYS[2])
local i = tonumber(ARGV[2])
if i < 0 then
  i = i + n
  if i < 0 then i = 0 end
end
if i >= n then
  redis.call('RPUSH', KEYS[2], ARGV[3])
elseif i == 0 then
  redis.call('LPUSH', KEYS[2], ARGV[3])
else
  local old = redis.call('LINDEX', KEYS[2], i)
  redis.call('LSET', KEYS[2], i, "{_TOMB}")
  redis.call('LINSERT', KEYS[2], 'BEFORE', "{_TOMB}", ARGV[3])
  redis.call('LSET', KEYS[2], i + 1, old)
end
bump()
return 1
"""
)
_L_REVERSE = (
    _PRELUDE
    + _L_BUMP
    + """
local all = redis.call('LRANGE', KEYS[2], 0, -1)
if #all > 1 then
  local rev = {}
  for j = #all, 1, -1 do rev[#rev + 1] = all[j] end
  redis.call('DEL', KEYS[2])
  pushall(KEYS[2], rev, 1)
end
bump()
return 1
"""
)
_L_IMUL = (
    _PRELUDE
    + _L_BUMP
    + """
local times = tonumber(ARGV[2])
if times <= 0 then
  redis.call('DEL', KEYS[2])
else
  local all = redis.call('LRANGE', KEYS[2], 0, -1)
  for r = 2, times do pushall(KEYS[2], all, 1) end
end
bump()
return 1
"""
)
_L_SNAPSHOT = (
    _PRELUDE
    + """
touch(KEYS[2]) touch(KEYS[3])
return {redis.call('GET', KEYS[3]) or '0', redis.call('LRANGE', KEYS[2], 0, -1)}
"""
)
_L_REPLACE = (
    _PRELUDE
    + _L_BUMP
    + """
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2])
pushall(KEYS[2], ARGV, 3)
bump()
return 1
"""
)
_L_CLEAR = _PRELUDE + _L_BUMP + "redis.call('DEL', KEYS[2]) bump() return 1"

# -- hash of attributes (Namespace): KEYS = manager, hash ---------------------
_H_SET = _PRELUDE + "redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) touch(KEYS[2]) return 1"
_H_DEL = _PRELUDE + "touch(KEYS[2]) return redis.call('HDEL', KEYS[2], ARGV[2])"
_H_ALL = _PRELUDE + "touch(KEYS[2]) return redis.call('HGETALL', KEYS[2])"

# -- one pickled value: KEYS = manager, key ---------------------------------------
_V_SET = _PRELUDE + "redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl) return 1"

# -- pickled object under a lease lock: KEYS = manager, state, owner, wake ------
# The object is either one pickle in KEYS[2], or (plain instances) its
# __dict__ in KEYS[2] and its class, pickled once, in KEYS[5].
_O_CREATE = (
    _PRELUDE
    + """
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
if ARGV[3] ~= '' then redis.call('SET', KEYS[5], ARGV[3], 'PX', ttl) end
return 1
"""
)
_O_ACQUIRE = (
    _PRELUDE
    + """
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then
  touch(KEYS[2]) touch(KEYS[5])
  local cls = false
  if ARGV[4] == '1' then cls = redis.call('GET', KEYS[5]) end
  return {1, redis.call('GET', KEYS[2]), cls}
end
return {0, redis.call('PTTL', KEYS[3])}
"""
)
_O_RELEASE = (
    _PRELUDE
    + """
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ttl)
else
  touch(KEYS[2])
end
touch(KEYS[5])
redis.call('DEL', KEYS[3])
if redis.call('LLEN', KEYS[4]) == 0 then redis.call('RPUSH', KEYS[4], 1) end
touch(KEYS[4])
return 1
"""
)
_O_PEEK = _PRELUDE + "return {redis.call('GET', KEYS[2]), redis.call('GET', KEYS[5])}"
