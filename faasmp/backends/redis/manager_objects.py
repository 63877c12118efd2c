"""Manager objects in Redis: dicts, lists, namespaces, values and pickled objects.

One class per structure (:class:`RedisDict`, :class:`RedisList`,
:class:`RedisNamespace`, :class:`RedisValue`, :class:`RedisObject`), each
owning its Lua, its key layout and its round-trip budget; the proxies of
``faasmp.managers`` call only their named methods.

Key layout.  Every object has the manager's key first (a SET naming every key
of the manager's objects, plus an ``'@auth:'`` member; see
:mod:`.managers`), then its own keys, named by the object's prefix plus the
class's ``SUFFIXES``:

* dict -- ``""`` a HASH (field = encoded key, value = signed pickle) and
  ``order`` a ZSET of the fields by insertion, so iteration and ``popitem``
  follow dict order;
* list -- ``""`` a LIST of signed pickles and ``v`` a version counter bumped
  by every write (read-compute-write operations replace the list only if it
  is unchanged);
* namespace -- ``""`` a HASH of attribute -> value;
* value -- ``""`` one key holding a pickle;
* object -- ``""`` the pickle (or a plain instance's ``__dict__``), ``own``
  the lease lock's owner token, ``wake`` a list a releaser pushes to wake a
  waiter, ``cls`` the class of a plain instance, pickled once.

Every script starts with the same prelude: it returns -1 when the manager key
is gone (shut down, or expired) and refreshes the TTLs it touches; a method
that sees -1 raises the error its store was made with.  The hottest writes
(``dict_set``, ``dict_update``, ``list_append``) use ``LEAN_PRELUDE``
instead: they renew the TTLs only every key_ttl/10 s (the store keeps the
clock) and on the keys they create, so setting an existing key is 3 Redis
calls instead of 6, appending 4 instead of 8.  An object still lives at
least 0.9 key_ttl after its last write.

Round-trip budget (one round trip each unless noted):

* reads -- ``dict_get``, ``dict_contains``, ``dict_len``, ``list_get``,
  ``list_len``, ``ns_get``, ``value_get`` are one plain command; only a miss
  (or an empty container) costs a second one, checking whether the manager is
  gone;
* writes -- ``dict_set``, ``dict_update``, ``dict_pop``, ``list_append``,
  ``list_set``, ``list_pop``, ``ns_set``, ``value_set``, ... are one Lua
  script; ``dict_items``/``list_snapshot`` read everything in one script;
* a registered object's method call -- ``obj_acquire`` (1 while the lock is
  free; a ``BLPOP`` per wait when it is held) plus ``obj_release`` (1).

Scripts run on the calling thread's own connection (``StateBackend.direct``):
redis-py's pooled path costs ~3x more (manager dict set p50 65 -> 36 us on
loopback).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ..state import ScriptCall, StateBackend

# ---------------------------------------------------------------------------
# Lua scripts.  KEYS[1] is always the manager's key; ARGV[1] the TTL in ms.
# A script returns the integer -1 when the manager is gone.
# ---------------------------------------------------------------------------

PRELUDE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local ttl = ARGV[1]
redis.call('PEXPIRE', KEYS[1], ttl)
local function touch(k) redis.call('PEXPIRE', k, ttl) end
local function pushall(k, t, from)
  for i = from, #t, 1000 do redis.call('RPUSH', k, unpack(t, i, math.min(i + 999, #t))) end
end
"""

# For the hot writes.  ARGV[1] is the TTL in ms, positive when this call
# renews every key (the store's periodic refresh), negative between refreshes:
# then ``touch_new`` sets the TTL only on keys this script created.  The
# manager's PEXPIRE is its existence check when it renews (one call, not two).
LEAN_PRELUDE = """
local ttl = tonumber(ARGV[1])
local refresh = ttl > 0
if refresh then
  if redis.call('PEXPIRE', KEYS[1], ttl) == 0 then return -1 end
else
  ttl = -ttl
  if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
end
local function touch_new(k, created)
  if refresh or created then redis.call('PEXPIRE', k, ttl) end
end
"""

REGISTER = (
    PRELUDE
    + """
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
return 1
"""
)

# -- dict: KEYS = manager, hash, order zset -------------------------------
D_KEYS = PRELUDE + "return redis.call('ZRANGE', KEYS[3], 0, -1)"
D_NEXT_SCORE = """
local function next_score()
  local top = redis.call('ZREVRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if top[2] then return tonumber(top[2]) + 1 end
  return 0
end
"""
D_SET = (
    LEAN_PRELUDE
    + D_NEXT_SCORE
    + """
local s = nil
for i = 2, #ARGV, 2 do
  if redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
    if s == nil then s = next_score() end
    redis.call('ZADD', KEYS[3], s, ARGV[i])
    s = s + 1
  end
end
-- A new field may have created both keys (an emptied dict's keys are gone).
touch_new(KEYS[2], s ~= nil) touch_new(KEYS[3], s ~= nil)
return 1
"""
)
D_SETDEFAULT = (
    PRELUDE
    + D_NEXT_SCORE
    + """
local inserted = redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3])
if inserted == 1 then redis.call('ZADD', KEYS[3], next_score(), ARGV[2]) end
touch(KEYS[2]) touch(KEYS[3])
if inserted == 1 then return 1 end
return redis.call('HGET', KEYS[2], ARGV[2])
"""
)
D_POP = (
    PRELUDE
    + """
local v = redis.call('HGET', KEYS[2], ARGV[2])
if v then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
return v
"""
)
D_POPITEM = (
    PRELUDE
    + """
local top = redis.call('ZREVRANGE', KEYS[3], 0, 0)
if not top[1] then return 0 end
local v = redis.call('HGET', KEYS[2], top[1])
redis.call('HDEL', KEYS[2], top[1])
redis.call('ZREM', KEYS[3], top[1])
return {top[1], v}
"""
)
D_ITEMS = (
    PRELUDE
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
D_CLEAR = PRELUDE + "redis.call('DEL', KEYS[2], KEYS[3]) return 1"

# -- list: KEYS = manager, list, version ------------------------------------
TOMB = "\\0faasmp:tombstone"  # shorter than any signed payload: never a real element
L_BUMP = """
local function bump()
  redis.call('INCR', KEYS[3])
  touch(KEYS[3]) touch(KEYS[2])
end
"""
L_PUSH = (
    LEAN_PRELUDE
    + """
local n = 0
for i = 2, #ARGV, 1000 do
  n = redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
touch_new(KEYS[2], n == #ARGV - 1)
touch_new(KEYS[3], redis.call('INCR', KEYS[3]) == 1)
return n
"""
)
L_RANGE = (
    PRELUDE
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
L_SET = (
    PRELUDE
    + L_BUMP
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
L_POP = (
    PRELUDE
    + L_BUMP
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
  redis.call('LSET', KEYS[2], i, "{TOMB}")
  redis.call('LREM', KEYS[2], 1, "{TOMB}")
end
bump()
return v
"""
)
L_INSERT = (
    PRELUDE
    + L_BUMP
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
  redis.call('LSET', KEYS[2], i, "{TOMB}")
  redis.call('LINSERT', KEYS[2], 'BEFORE', "{TOMB}", ARGV[3])
  redis.call('LSET', KEYS[2], i + 1, old)
end
bump()
return 1
"""
)
L_REVERSE = (
    PRELUDE
    + L_BUMP
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
L_IMUL = (
    PRELUDE
    + L_BUMP
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
L_SNAPSHOT = (
    PRELUDE
    + """
touch(KEYS[2]) touch(KEYS[3])
return {redis.call('GET', KEYS[3]) or '0', redis.call('LRANGE', KEYS[2], 0, -1)}
"""
)
L_REPLACE = (
    PRELUDE
    + L_BUMP
    + """
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[2])
pushall(KEYS[2], ARGV, 3)
bump()
return 1
"""
)
L_CLEAR = PRELUDE + L_BUMP + "redis.call('DEL', KEYS[2]) bump() return 1"

# -- hash of attributes (Namespace): KEYS = manager, hash ---------------------
H_SET = PRELUDE + "redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) touch(KEYS[2]) return 1"
H_DEL = PRELUDE + "touch(KEYS[2]) return redis.call('HDEL', KEYS[2], ARGV[2])"
H_ALL = PRELUDE + "touch(KEYS[2]) return redis.call('HGETALL', KEYS[2])"

# -- one pickled value: KEYS = manager, key ---------------------------------------
V_SET = PRELUDE + "redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl) return 1"

# -- pickled object under a lease lock: KEYS = manager, state, owner, wake ------
# The object is either one pickle in KEYS[2], or (plain instances) its
# __dict__ in KEYS[2] and its class, pickled once, in KEYS[5].
O_CREATE = (
    PRELUDE
    + """
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
if ARGV[3] ~= '' then redis.call('SET', KEYS[5], ARGV[3], 'PX', ttl) end
return 1
"""
)
O_ACQUIRE = (
    PRELUDE
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
O_RELEASE = (
    PRELUDE
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
O_PEEK = PRELUDE + "return {redis.call('GET', KEYS[2]), redis.call('GET', KEYS[5])}"


#: What a script returns when the manager is gone.
GONE = -1
#: ``list_pop``/``list_set`` results: the index is outside the list / the list is empty.
OUT_OF_RANGE = -2
EMPTY = -3


class ManagerObjectStore:
    """One shared object's keys in Redis; the base of the per-structure classes.

    *keys* are the object's own keys (named by :attr:`SUFFIXES`), *gone*
    makes the error raised when the manager (or the object) is gone: it must
    not refer to the proxy (the store lives in the proxy's cache).
    """

    #: The object's keys: its key prefix plus each suffix, in this order.
    SUFFIXES: ClassVar[tuple[str, ...]] = ("",)

    __slots__ = (
        "_commands",
        "_fresh_until",
        "_gone",
        "_script_keys",
        "_scripts",
        "_state",
        "_ttl",
        "keys",
        "manager_key",
    )

    def __init__(
        self,
        state: StateBackend,
        manager_key: str,
        keys: Sequence[str],
        ttl_ms: int,
        gone: Callable[[], Exception],
    ) -> None:
        self._state = state
        self.manager_key = manager_key
        self.keys = list(keys)
        self._script_keys = (manager_key, *keys)  # every script's KEYS, built once
        self._ttl = ttl_ms
        self._gone = gone
        self._scripts: dict[str, ScriptCall] = {}
        self._commands: dict[str, Callable[..., Any]] = {}
        self._fresh_until = 0.0  # LEAN_PRELUDE scripts renew every TTL from then on

    def _run(self, source: str, *args: Any, ttl: int | None = None) -> Any:
        """Run one of this module's scripts (one round trip); raise *gone* on -1."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self._state.direct.script(source)
        ttl = self._ttl if ttl is None else ttl
        result = script(keys=self._script_keys, args=(ttl, *args))
        if result.__class__ is int and result == GONE:
            raise self._gone()
        return result

    def _run_lean(self, source: str, *args: Any) -> Any:
        """:meth:`_run` for a ``LEAN_PRELUDE`` script: it renews the TTLs every key_ttl/10 s."""
        now = time.monotonic()
        ttl = -self._ttl
        if now >= self._fresh_until:
            self._fresh_until = now + self._ttl / 10_000  # a tenth of the TTL, in s
            ttl = self._ttl
        return self._run(source, *args, ttl=ttl)

    def _read(self, *command: Any) -> Any:
        """One plain command on the thread's own connection."""
        return self._state.direct.execute(*command)

    def _read_own(self, name: str, *args: Any) -> Any:
        """``name key args...`` on the object's first key: the command and key are packed once per store."""
        call = self._commands.get(name)
        if call is None:
            call = self._commands[name] = self._state.direct.command(name, self.keys[0])
        return call(*args)

    def check_alive(self) -> None:
        """After a plain read found nothing: raise *gone* if that is because the manager is gone.

        Reads are single commands (no Lua): a hit cannot happen after
        shutdown, which deletes every key atomically, so only misses check.
        """
        if not self._read("EXISTS", self.manager_key):
            raise self._gone()

    def register(self) -> None:
        """Record this object's keys with its manager (deleted at its shutdown)."""
        self._run(REGISTER, *self.keys)


class RedisDict(ManagerObjectStore):
    """A manager dict: a HASH of encoded key -> signed pickle plus its insertion order."""

    SUFFIXES = ("", "order")
    __slots__ = ()

    def dict_get(self, field: bytes) -> bytes | None:
        """The value stored under *field*, or None (1 round trip on a hit)."""
        blob = self._read_own("HGET", field)
        if blob is None:
            self.check_alive()
        return blob

    def dict_contains(self, field: bytes) -> bool:
        if self._read_own("HEXISTS", field):
            return True
        self.check_alive()
        return False

    def dict_size(self) -> int:
        """The number of items, without checking that the manager is alive."""
        return int(self._read_own("HLEN"))

    def dict_len(self) -> int:
        n = self.dict_size()
        if n == 0:
            self.check_alive()
        return n

    def dict_set(self, field: bytes, blob: bytes) -> None:
        """Set one item (1 round trip)."""
        self._run_lean(D_SET, field, blob)

    def dict_update(self, pairs: Sequence[bytes]) -> None:
        """Set several items atomically; *pairs* is field, value, field, value, ..."""
        self._run_lean(D_SET, *pairs)

    def dict_setdefault(self, field: bytes, blob: bytes) -> bytes | None:
        """Insert *blob* unless *field* exists: None if inserted, else the stored value."""
        result = self._run(D_SETDEFAULT, field, blob)
        return None if result.__class__ is int else result  # type: ignore[no-any-return]

    def dict_pop(self, field: bytes) -> bytes | None:
        """Remove *field*; its value, or None if it was not there."""
        return self._run(D_POP, field)  # type: ignore[no-any-return]

    def dict_popitem(self) -> tuple[bytes, bytes] | None:
        """Remove the last inserted item; None if the dict is empty."""
        result = self._run(D_POPITEM)
        return None if result.__class__ is int else (result[0], result[1])

    def dict_keys(self) -> list[bytes]:
        """The fields in insertion order."""
        return self._run(D_KEYS)  # type: ignore[no-any-return]

    def dict_items(self) -> tuple[list[bytes], list[bytes]]:
        """Fields and values in insertion order, in one script."""
        fields, blobs = self._run(D_ITEMS)
        return fields, blobs

    def dict_clear(self) -> None:
        self._run(D_CLEAR)


class RedisList(ManagerObjectStore):
    """A manager list: a LIST of signed pickles plus a version counter."""

    SUFFIXES = ("", "v")
    __slots__ = ()

    def list_get(self, index: int) -> bytes | None:
        """The item at *index* (negative from the end), or None if out of range."""
        blob = self._read_own("LINDEX", index)
        if blob is None:
            self.check_alive()
        return blob  # type: ignore[no-any-return]

    def list_len(self) -> int:
        n = int(self._read_own("LLEN"))
        if n == 0:
            self.check_alive()
        return n

    def list_range(self, start: int | str, stop: int | str) -> list[bytes]:
        """Items ``[start:stop]`` with Python's clamping ("" for an open end)."""
        return self._run(L_RANGE, start, stop)  # type: ignore[no-any-return]

    def list_snapshot(self) -> tuple[bytes, list[bytes]]:
        """(version, every item), in one script."""
        version, raw = self._run(L_SNAPSHOT)
        return version, raw

    def list_append(self, *blobs: bytes) -> int:
        """Append *blobs* atomically; the new length."""
        return int(self._run_lean(L_PUSH, *blobs))

    def list_set(self, index: int, blob: bytes) -> bool:
        """Replace the item at *index*; False if out of range."""
        return self._run(L_SET, index, blob) == 1  # type: ignore[no-any-return]

    def list_pop(self, index: int) -> bytes | int:
        """Remove and return the item at *index*, or :data:`OUT_OF_RANGE` / :data:`EMPTY`."""
        return self._run(L_POP, index)  # type: ignore[no-any-return]

    def list_insert(self, index: int, blob: bytes) -> None:
        """Insert before *index* (clamped, as ``list.insert``)."""
        self._run(L_INSERT, index, blob)

    def list_reverse(self) -> None:
        self._run(L_REVERSE)

    def list_repeat(self, times: int) -> None:
        """``*= times`` in place."""
        self._run(L_IMUL, times)

    def list_replace(self, version: bytes, blobs: Sequence[bytes]) -> bool:
        """Replace every item if the list is still at *version*; False if it changed."""
        return self._run(L_REPLACE, version, *blobs) == 1  # type: ignore[no-any-return]

    def list_clear(self) -> None:
        self._run(L_CLEAR)


class RedisNamespace(ManagerObjectStore):
    """A manager Namespace: a HASH of attribute name -> signed pickle."""

    __slots__ = ()

    def ns_get(self, name: bytes) -> bytes | None:
        blob = self._read_own("HGET", name)
        if blob is None:
            self.check_alive()
        return blob  # type: ignore[no-any-return]

    def ns_set(self, name: bytes, blob: bytes) -> None:
        self._run(H_SET, name, blob)

    def ns_del(self, name: bytes) -> bool:
        """Delete attribute *name*; False if it did not exist."""
        return bool(self._run(H_DEL, name))

    def ns_items(self) -> list[tuple[bytes, bytes]]:
        flat = self._run(H_ALL)
        it = iter(flat)
        return list(zip(it, it, strict=True))


class RedisValue(ManagerObjectStore):
    """A manager Value: one key holding a signed pickle."""

    __slots__ = ()

    def value_get(self) -> bytes | None:
        blob = self._read_own("GET")
        if blob is None:
            self.check_alive()
        return blob  # type: ignore[no-any-return]

    def value_set(self, blob: bytes) -> None:
        self._run(V_SET, blob)


class RedisObject(ManagerObjectStore):
    """A registered object: its pickle under a lease lock (owner token, wake list)."""

    SUFFIXES = ("", "own", "wake", "cls")
    __slots__ = ()

    def obj_create(self, blob: bytes, cls_blob: bytes | None = None) -> None:
        """Store the initial state (and a plain instance's class)."""
        self._run(O_CREATE, blob, cls_blob if cls_blob is not None else "")

    def obj_peek(self) -> tuple[bytes | None, bytes | None]:
        """(state, class) without taking the lock."""
        blob, cls_blob = self._run(O_PEEK)
        return blob, cls_blob

    def obj_acquire(self, token: str, lease_ms: int, need_cls: bool) -> tuple[bytes | None, bytes | None]:
        """Take the lock as *token* for *lease_ms*; the state and (if *need_cls*) the class.

        Blocks while another caller holds it: in ``BLPOP`` on the wake list,
        at most until that holder's lease ends (a crashed holder's lock frees
        itself then).  A state of None means it expired while the lock was
        free: the caller holds the lock and must release it.
        """
        while True:
            result = self._run(O_ACQUIRE, token, lease_ms, "1" if need_cls else "0")
            if result[0] == 1:
                return result[1], result[2]
            pttl = int(result[1])
            wait = pttl / 1000 + 0.001 if pttl > 0 else 0.005
            self._state.blpop([self.keys[2]], max(wait, 0.005))  # woken by the holder's release

    def obj_release(self, token: str, blob: bytes | None) -> bool:
        """Release the lock, storing *blob* if given; False if the lease was lost meanwhile."""
        changed = "1" if blob is not None else "0"
        return self._run(O_RELEASE, token, changed, blob if blob is not None else b"") == 1  # type: ignore[no-any-return]
