"""Reference counts of a manager's shared objects: the stdlib server's ``id_to_refcount``, in Redis.

A stdlib manager server counts the proxies of each object and deletes the
object when the last one goes.  faasmp has no server, so the count lives
beside the objects:

* ``<manager>:objs`` — HASH, object id -> ``"<typeid>\\n<key>\\n<key>..."``:
  every live object of the manager and the keys that make it up;
* ``<manager>:refs:<object id>`` — HASH, handle -> holder: one field per
  proxy (or pickled copy on its way to another process).  The holder is
  ``""`` for a handle its process releases itself (garbage collection), a
  faasmp process id for a handle inside a remote process (released when that
  process has exited, even if it was killed), or ``@in:<object id>`` (see
  :func:`pin`) for a copy stored inside another shared object
  (``l.append(m.dict())``), which counts while that object is alive.

When an object's last handle goes, its keys, its refs hash and its entry are
deleted at once (one Lua script).  The manager's SET (``KEYS[1]`` of every
manager script) names the objs hash and each refs hash, so shutdown deletes
them with everything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..state import StateBackend


def pin(container_oid: str) -> str:
    """The handle (and holder) of a copy stored inside object *container_oid*.

    The same for every copy stored there, so storing the same value twice
    pickles to the same bytes.
    """
    return f"@in:{container_oid}"


def is_pin(handle: str) -> bool:
    """Whether *handle* was made by :func:`pin`."""
    return handle.startswith("@in:")


# free(): delete an object's keys, refs hash and entry (*tracked* false: its
# refs hash expired with the TTL safety net, so only the entry is forgotten;
# the data's own TTL governs it).
# sweep(): drop the handles of remote processes that have exited and pins of
# containers that are gone; free the object if nothing is left (*had*: the
# caller just removed a handle, so it was tracked).  True if it is gone.
# Both use KEYS[1] (manager SET) and KEYS[2] (objs HASH).
_SWEEP = """
local function free(oid, refs, tracked)
  local entry = redis.call('HGET', KEYS[2], oid)
  if entry and tracked then
    local first = true
    for k in string.gmatch(entry, '[^\\n]+') do
      if not first then
        redis.call('DEL', k)
        redis.call('SREM', KEYS[1], k)
      end
      first = false
    end
  end
  redis.call('HDEL', KEYS[2], oid)
  redis.call('DEL', refs)
  redis.call('SREM', KEYS[1], refs)
end

local function sweep(oid, prefix, refs_prefix, had)
  local refs = refs_prefix .. oid
  local tracked = had or redis.call('EXISTS', refs) == 1
  local fields = redis.call('HGETALL', refs)
  for i = 1, #fields, 2 do
    local holder = fields[i + 1]
    if string.sub(holder, 1, 4) == '@in:' then
      local container = string.sub(holder, 5)
      if redis.call('HEXISTS', KEYS[2], container) == 0 then redis.call('HDEL', refs, fields[i]) end
    elseif holder ~= '' then
      local st = redis.call('HGET', prefix .. 'proc:' .. holder, 'state')
      if st == false or st == 'exited' then redis.call('HDEL', refs, fields[i]) end
    end
  end
  if redis.call('EXISTS', refs) == 1 then return false end
  free(oid, refs, tracked)
  return true
end
"""

# Register a new object with its first handle.  KEYS: manager SET, objs HASH,
# the object's refs HASH.  ARGV: ttl ms, object id, entry, handle.
# Returns -1 if the manager is gone.
_ADD_OBJECT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[4], '')
redis.call('SADD', KEYS[1], KEYS[2], KEYS[3])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return 1
"""

# Add a handle to a live object.  KEYS: objs HASH, refs HASH.  ARGV: ttl ms,
# object id, handle, holder.  Returns 0 if the object is gone.
_ADD_HANDLE = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"""

# Drop one handle; free the object when none is left.  KEYS: manager SET,
# objs HASH.  ARGV: run key prefix, refs key prefix, object id, handle.
# Returns 1 if the object was freed.
_DROP_HANDLE = (
    _SWEEP
    + """
local removed = redis.call('HDEL', ARGV[2] .. ARGV[3], ARGV[4])
if sweep(ARGV[3], ARGV[1], ARGV[2], removed == 1) then return 1 end
return 0
"""
)

# Collect, then list every live object: {object id, entry, handles, pins}.
# Dropping handles frees an object once nothing refers to it; objects that
# refer only to each other (``b.append(b)``, or a stored in b and b in a) are
# found here, by marking what is reachable from a handle of a live process
# through the pins, as a tracing collector does.
# KEYS: manager SET, objs HASH.  ARGV: run key prefix, refs key prefix.
_LIVE = (
    _SWEEP
    + """
local prefix, refs_prefix = ARGV[1], ARGV[2]
local oids = redis.call('HKEYS', KEYS[2])
local live, pinned_by, tracked = {}, {}, {}
for _, oid in ipairs(oids) do
  local refs = refs_prefix .. oid
  local fields = redis.call('HGETALL', refs)
  tracked[oid] = #fields > 0
  local pins = {}
  for i = 1, #fields, 2 do
    local holder = fields[i + 1]
    if string.sub(holder, 1, 4) == '@in:' then
      pins[#pins + 1] = string.sub(holder, 5)
    elseif holder == '' then
      live[oid] = true
    else
      local st = redis.call('HGET', prefix .. 'proc:' .. holder, 'state')
      if st == false or st == 'exited' then redis.call('HDEL', refs, fields[i]) else live[oid] = true end
    end
  end
  pinned_by[oid] = pins
end
local changed = true
while changed do
  changed = false
  for _, oid in ipairs(oids) do
    if not live[oid] then
      for _, container in ipairs(pinned_by[oid]) do
        if live[container] then
          live[oid] = true
          changed = true
          break
        end
      end
    end
  end
end
local out = {}
for _, oid in ipairs(oids) do
  if live[oid] then
    out[#out + 1] = {oid, redis.call('HGET', KEYS[2], oid),
                     redis.call('HLEN', refs_prefix .. oid), #pinned_by[oid]}
  else
    free(oid, refs_prefix .. oid, tracked[oid])
  end
end
return out
"""
)


class ManagerRefs:
    """The reference counts of one manager's objects (see the module docstring)."""

    def __init__(self, state: StateBackend, run_prefix: str, manager_key: str, ttl_ms: int) -> None:
        self._state = state
        self._prefix = run_prefix
        self._mgr = manager_key
        self._objs = f"{manager_key}:objs"
        self._refs_prefix = f"{manager_key}:refs:"
        self._ttl = ttl_ms

    def refs_key(self, oid: str) -> str:
        """The HASH of the handles of object *oid*."""
        return self._refs_prefix + oid

    def add_object(self, oid: str, typeid: str, keys: list[str], handle: str) -> bool:
        """Record a new object made of *keys* with its first *handle*; False if the manager is gone."""
        entry = "\n".join([typeid, *keys])
        result = self._state.script(_ADD_OBJECT)(
            keys=[self._mgr, self._objs, self.refs_key(oid)], args=[self._ttl, oid, entry, handle]
        )
        return bool(result == 1)

    def add_handle(self, oid: str, handle: str, holder: str = "") -> bool:
        """One more reference to *oid* (a pickled copy, or a pin); False if the object is gone."""
        result = self._state.script(_ADD_HANDLE)(
            keys=[self._objs, self.refs_key(oid)], args=[self._ttl, oid, handle, holder]
        )
        return bool(result == 1)

    def drop_handle(self, oid: str, handle: str) -> bool:
        """Release a reference; True if it was the last and the object was deleted."""
        result = self._state.script(_DROP_HANDLE)(
            keys=[self._mgr, self._objs], args=[self._prefix, self._refs_prefix, oid, handle]
        )
        return bool(result == 1)

    def live(self) -> list[tuple[str, str, int, int]]:
        """Every live object as ``(object id, typeid, references, pins)``, after freeing unreferenced ones."""
        rows: list[Any] = self._state.script(_LIVE)(
            keys=[self._mgr, self._objs], args=[self._prefix, self._refs_prefix]
        )
        out = []
        for oid, entry, count, pins in rows or []:
            oid_s = oid.decode() if isinstance(oid, bytes) else str(oid)
            text = entry.decode() if isinstance(entry, bytes) else str(entry)
            out.append((oid_s, text.split("\n", 1)[0], int(count), int(pins)))
        return out
