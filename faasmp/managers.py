"""Managers: shared dicts, lists, namespaces and custom objects, kept in Redis.

The API of :mod:`multiprocessing.managers` (``SyncManager``, ``BaseManager.register``,
proxies) with **no server process**: every proxy acts directly on the object's
state in Redis, so a proxy passed to a :class:`~faasmp.Process` or a
:class:`~faasmp.Pool` worker keeps working there, and every operation is one
round trip (a plain command for reads, an atomic Lua script for writes).

How each type is kept (and how it differs from the stdlib):

* ``dict`` -> :class:`DictProxy`: a Redis HASH (field = encoded key, value =
  signed pickle) plus a ZSET remembering insertion order, so ``keys()``,
  iteration and ``popitem()`` (LIFO) follow dict order.  Keys of type ``str``,
  ``int``, ``bytes``, ``float``, ``bool``, ``None`` and tuples/frozensets of
  them are encoded canonically; other hashable keys are encoded by (signed)
  pickle and must pickle identically when equal (true for enums, most frozen
  dataclasses; not for objects whose pickle depends on identity).  Keys are
  matched by type *and* value: ``1``, ``1.0`` and ``True`` are three
  different keys (in a dict they are one).
* ``list`` -> :class:`ListProxy`: a Redis LIST of signed pickles.  Append,
  extend, pop, insert, reverse, ``*=`` are Lua scripts; ``sort``, ``remove`` and slice
  assignment/deletion read the list, compute in Python and write it back only
  if nobody changed it meanwhile (a version counter; retried on conflict).
* ``Namespace`` -> :class:`NamespaceProxy`: a HASH of attribute -> value.
* ``Value`` -> :class:`ValueProxy`: one key holding a pickle, any object (as the
  stdlib's manager ``Value``, whose ``lock`` argument is ignored as well).
* Registered classes -> :class:`AutoProxy`: the instance is pickled in one key
  (a plain instance as its ``__dict__``, its class stored once beside it);
  each method call runs *in the calling process* as load -> call -> store
  while holding a per-object Redis lock (owner token, lease expiry, waiting in
  ``BLPOP``), so calls from any number of processes are serialized.  Side
  effects of a method (prints, files) happen in the caller, not in a server;
  a method that raises keeps the changes it made before (as a server object
  would).  ``method_to_typeid`` results become new shared objects.
* ``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Condition``,
  ``Event``, ``Barrier``, ``Queue``, ``JoinableQueue``, ``Array`` and ``Pool``
  are the context's own Redis-backed objects (already shareable), returned as
  they are; the manager releases them (and terminates pools) at shutdown,
  after which they raise their own "state is gone" ``RuntimeError``.  Objects
  passed in (``m.Condition(my_lock)``) are not the manager's to release.

Values fetched from a proxy are copies: ``d['k'].append(1)`` changes the copy
only, exactly as with the stdlib (assign it back: ``d['k'] = v``).  Values may
be proxies themselves (``l.append(m.dict())``): they round-trip as proxies to
the same Redis state.

Lifetime: objects are reference counted in Redis, as the stdlib's server
counts proxies (``faasmp.backends.redis.manager_refs``).  An object lives
while a proxy of it exists in some process, a pickled copy is on its way to
one, or it is stored inside another live object of the manager; a copy inside
a remote process counts until that process exits (even if it is killed).  When
the last reference goes its keys are deleted at once; objects that only refer
to each other (``b.append(b)``) are collected by ``_number_of_objects()``,
which traces what is reachable, and at shutdown.  A proxy stored in a
container keeps its object until the container goes, even after it is
removed from the container; a copy pickled but never unpickled (a queue item
nobody reads, a process terminated before it ran) and a copy in a pool worker
that is killed keep it until shutdown.  Directly shared objects (``m.Lock()``,
``m.Queue()``, ...) live as long as the object in the process that made them,
like any faasmp object.  ``shutdown()`` (or leaving a ``with`` block, or the
manager and every proxy made from it in this process being garbage
collected) deletes everything left at once; using a proxy afterwards raises
:class:`ManagerShutdownError`.  ``_number_of_objects()`` and ``_debug_info()``
report the live objects as the stdlib's do.  Every write refreshes the keys'
TTL (``key_ttl``), the safety net for a killed client: an object nobody
writes to for that long expires.

Speed: a read is one plain Redis command (``HGET``, ``LINDEX``, ...; only a
miss checks whether the manager is gone), a write one Lua script; there is no
server process in between, and proxies work the same from any machine that
reaches the Redis server.
"""

from __future__ import annotations

import contextlib
import contextvars
import copyreg
import enum
import errno
import functools
import hashlib
import hmac
import operator
import os
import pickle
import secrets
import sys
import threading
import types
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, MutableSequence
from dataclasses import dataclass
from multiprocessing import ProcessError
from typing import TYPE_CHECKING, Any, ClassVar

from .backends.redis.manager_refs import ManagerRefs, is_pin, pin
from .runtime.call import AuthenticationError, PicklingFailed, dumps, loads, pickling_failed
from .runtime.shared import SharedObject, _default_ctx
from .synchronize import Event as Event_

if TYPE_CHECKING:
    from .backends.state import ScriptCall, StateBackend
    from .context import FaasContext

__all__ = [
    "AutoProxy",
    "BaseManager",
    "BaseProxy",
    "DictProxy",
    "Direct",
    "EventProxy",
    "ListProxy",
    "MakeProxyType",
    "ManagerShutdownError",
    "Namespace",
    "NamespaceProxy",
    "SharedMemoryManager",
    "SyncManager",
    "Token",
    "Value",
    "ValueProxy",
    "all_methods",
    "public_methods",
]


class ManagerShutdownError(ProcessError):
    """A proxy was used after its manager shut down (its objects are deleted)."""


# ---------------------------------------------------------------------------
# Reference counts (the stdlib server's id_to_refcount; kept in Redis by
# backends.redis.manager_refs).  Every proxy holds a handle of its object; a
# pickled copy gets its own handle when it is pickled (so the object survives
# while the copy travels) and releases it when the copy is garbage collected,
# or, inside a remote process, when that process has exited.  A copy stored
# inside another shared object holds a pin, which counts while that object lives.
# ---------------------------------------------------------------------------

#: The object id of the shared object a value is being pickled into, if any:
#: proxies inside the value then get a pin, not a handle.
_PINNING: contextvars.ContextVar[str | None] = contextvars.ContextVar("faasmp_manager_pinning", default=None)


def _refs(session: Any, mid: str) -> ManagerRefs:
    return ManagerRefs(
        session.state, session.keys.prefix, session.keys.k("mgr", mid), int(session.config.key_ttl * 1000)
    )


def _drop_ref(session: Any, mid: str, oid: str, handle: str) -> None:
    """Finalizer of a reference: release its handle; the last one frees the object."""
    if session.closed:
        return
    try:
        freed = _refs(session, mid).drop_handle(oid, handle)
    except Exception:  # noqa: BLE001 - runs from garbage collection; the run may be ending
        return
    server = _LOCAL_SERVERS.get(mid)
    if freed and server is not None:
        server.forget(oid)


def _current_proc_id() -> str | None:
    """The faasmp process id of the calling code when it runs in a remote Process."""
    from .process import current_process  # noqa: PLC0415

    return getattr(current_process(), "_proc_id", None)


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


# ---------------------------------------------------------------------------
# Dict key encoding: canonical bytes for common key types (no pickle, so equal
# keys always give the same field), signed pickle for anything else.
# ---------------------------------------------------------------------------


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _encode_key(key: Any, authkey: bytes) -> bytes:
    tp = type(key)
    if tp is str:
        return b"s" + key.encode("utf-8", "surrogatepass")
    if tp is int:
        return b"i" + format(key, "x").encode()
    if tp is bytes:
        return b"b" + key
    if key is None:
        return b"n"
    if tp is bool:
        return b"T" if key else b"F"
    if tp is float:
        return b"d" + key.hex().encode()
    if tp is tuple:
        return b"t" + b"".join(_frame(_encode_key(x, authkey)) for x in key)
    if tp is frozenset:
        return b"f" + b"".join(_frame(e) for e in sorted(_encode_key(x, authkey) for x in key))
    hash(key)  # unhashable keys fail as they do in a dict: TypeError: unhashable type
    return b"p" + dumps(key, authkey)


def _unframe(body: bytes, authkey: bytes) -> Iterator[Any]:
    pos = 0
    while pos < len(body):
        n = int.from_bytes(body[pos : pos + 4], "big")
        yield _decode_key(body[pos + 4 : pos + 4 + n], authkey)
        pos += 4 + n


def _decode_key(field: bytes, authkey: bytes) -> Any:
    tag, body = field[:1], field[1:]
    if tag == b"s":
        return body.decode("utf-8", "surrogatepass")
    if tag == b"i":
        return int(body, 16)
    if tag == b"b":
        return bytes(body)
    if tag == b"n":
        return None
    if tag == b"T":
        return True
    if tag == b"F":
        return False
    if tag == b"d":
        return float.fromhex(body.decode())
    if tag == b"t":
        return tuple(_unframe(body, authkey))
    if tag == b"f":
        return frozenset(_unframe(body, authkey))
    if tag == b"p":
        return loads(body, authkey)
    raise ValueError(f"unknown dict key encoding {tag!r} in a manager dict (not written by faasmp?)")


# ---------------------------------------------------------------------------
# Server-side types of the stdlib (kept for _getvalue() and registration)
# ---------------------------------------------------------------------------


class Namespace:
    """A plain namespace, what ``NamespaceProxy._getvalue()`` returns."""

    def __init__(self, /, **kwds: Any) -> None:
        self.__dict__.update(kwds)

    def __repr__(self) -> str:
        items = sorted(f"{k}={v!r}" for k, v in self.__dict__.items() if not k.startswith("_"))
        return f"{type(self).__name__}({', '.join(items)})"


class Value:
    """The stdlib manager's ``Value``: any object with a typecode label (no lock)."""

    def __init__(self, typecode: Any, value: Any, lock: Any = True) -> None:
        self._typecode = typecode
        self._value = value

    def get(self) -> Any:
        return self._value

    def set(self, value: Any) -> None:
        self._value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._typecode!r}, {self._value!r})"

    value = property(get, set)


def all_methods(obj: Any) -> list[str]:
    """Names of every callable attribute of *obj* (as the stdlib)."""
    return [name for name in dir(obj) if callable(getattr(obj, name, None))]


def public_methods(obj: Any) -> list[str]:
    """Names of the callable attributes of *obj* not starting with ``_``."""
    return [name for name in all_methods(obj) if name[0] != "_"]


@dataclass(frozen=True)
class Token:
    """What identifies a shared object (stdlib-compatible fields)."""

    typeid: str
    address: str
    id: str


# ---------------------------------------------------------------------------
# Proxies
# ---------------------------------------------------------------------------


def _is_plain(value: Any) -> bool:
    """Does pickle rebuild *value* as ``cls.__new__(cls)`` plus its ``__dict__``?"""
    tp = type(value)
    if tp.__reduce_ex__ is not object.__reduce_ex__ or tp.__reduce__ is not object.__reduce__:
        return False
    if tp in copyreg.dispatch_table or hasattr(value, "__setstate__") or not hasattr(value, "__dict__"):
        return False
    try:
        rv = value.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - not picklable this way: store it whole
        return False
    return (
        len(rv) >= 3
        and rv[0] is copyreg.__newobj__  # type: ignore[attr-defined]
        and rv[1] == (tp,)
        and (rv[2] is None or rv[2] is value.__dict__)
        and all(extra is None for extra in rv[3:])
    )


class _Conn:
    """Per-proxy cache of what every operation needs (not pickled)."""

    __slots__ = ("authkey", "keys", "scripts", "session", "state", "ttl")

    def __init__(self, session: Any, keys: list[str]) -> None:
        self.session = session
        self.state: StateBackend = session.state
        self.authkey: bytes = session.authkey
        self.ttl = int(session.config.key_ttl * 1000)
        self.keys = keys
        self.scripts: dict[str, ScriptCall] = {}


class BaseProxy(SharedObject):
    """A reference to an object that lives in Redis, usable from any process.

    Subclass it (like the stdlib's ``BaseProxy``) and call
    :meth:`_callmethod` for a custom proxy type; the referent is pickled in one
    key and each call runs locally under the object's Redis lock.  Proxies are
    created by a manager, never directly.
    """

    _kind: ClassVar[str] = "mobj"
    _key_suffixes: ClassVar[tuple[str, ...]] = ("", "own", "wake", "cls")
    _exposed_: ClassVar[tuple[str, ...] | None] = None
    _method_to_typeid_: ClassVar[dict[str, str] | None] = None
    #: Longest a method call may hold an object's lock before another caller
    #: may take it (a crashed caller's lock frees itself after this).
    _lease: ClassVar[float] = 60.0

    _mid: str
    _typeid: str
    _manager: BaseManager | None
    _exposed: tuple[str, ...] | None
    _mcls: type[BaseManager] | None
    _plain: bool

    def __init__(self, *args: Any, **kwds: Any) -> None:
        raise TypeError(f"{type(self).__name__} objects are made by a manager, e.g. manager.dict()")

    # -- construction (manager side) -------------------------------------------
    @classmethod
    def _new(cls, ctx: FaasContext, mid: str, typeid: str, manager: BaseManager | None) -> Any:
        self = cls.__new__(cls)
        d = self.__dict__
        d["_ctx"] = ctx
        d["_oid"] = secrets.token_hex(8)
        d["_owner"] = False
        d["_mid"] = mid
        d["_typeid"] = typeid
        d["_manager"] = manager  # keeps the manager (and its objects) alive while we are
        d["_exposed"] = cls._exposed_
        d["_mcls"] = None
        d["_plain"] = False
        return self

    def _register(self) -> None:
        """Record this object's keys with its manager (deleted at its shutdown)."""
        self._call(_REGISTER, *self._conn().keys[1:])

    def _track(self) -> None:
        """Count the new object with this proxy as its first reference."""
        conn = self._conn()
        handle = secrets.token_hex(6)
        if not _refs(conn.session, self._mid).add_object(self._oid, self._typeid, conn.keys[1:], handle):
            raise self._closed_error()
        self._hold(handle)

    def _hold(self, handle: str) -> None:
        """Release *handle* when this proxy is garbage collected."""
        d = self.__dict__
        d["_ref"] = handle
        d["_ref_finalizer"] = weakref.finalize(
            self, _drop_ref, self._ctx.session, self._mid, self._oid, handle
        )

    def _copy_handle(self) -> str | None:
        """A reference for a pickled copy (a pin if it is stored in a shared object)."""
        if not self._ctx.running:
            return None
        container = _PINNING.get()
        handle = pin(container) if container is not None else secrets.token_hex(6)
        refs = _refs(self._conn().session, self._mid)
        # False: the object is not counted (gone, or its count expired): no handle.
        return handle if refs.add_handle(self._oid, handle, handle if container else "") else None

    def _adopt(self, value: Any) -> None:
        """Store *value* as the initial state (subclasses store natively).

        A plain instance (pickled as class + ``__dict__``) is stored as its
        ``__dict__``, its class once beside it: a class defined in
        ``__main__`` is pickled by value, which would otherwise cost a few
        hundred microseconds on every method call.
        """
        try:
            if _is_plain(value):
                state = self._dump(vars(value), "the object's attributes")
                cls_blob = self._dump(type(value), "the object's class")
                self.__dict__["_plain"] = True
                self.__dict__["_cls"] = type(value)
                self._call(_O_CREATE, state, cls_blob)
            else:
                self._call(_O_CREATE, self._dump(value, "the object"), "")
        except PicklingFailed:
            manager = self._manager
            if manager is None or manager._kind is not _Kind.OWNER:
                raise
            # Cannot live in Redis (a generator, an open file...): keep it here and
            # serve it to other processes, as the stdlib's manager server would.
            manager._local_server().keep(self._oid, value)
            self.__dict__["_served"] = True

    # -- pickling ----------------------------------------------------------------
    def _getstate_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"_mid": self._mid, "_typeid": self._typeid}
        if self._exposed is not type(self)._exposed_:
            extra["_exposed"] = self._exposed
        if self._mcls is not None:
            extra["_mcls"] = self._mcls
        if self._plain:
            extra["_plain"] = True
        if self.__dict__.get("_served"):
            extra["_served"] = True
        handle = self._copy_handle()
        if handle is not None:
            extra["_ref"] = handle
        return extra

    def _setstate_extra(self, state: dict[str, Any]) -> None:
        d = self.__dict__
        d["_manager"] = None
        d["_exposed"] = type(self)._exposed_
        d["_mcls"] = None
        d["_plain"] = False
        handle = state.pop("_ref", None)
        d.update(state)
        if handle is None or not self._ctx.running:
            return
        refs = _refs(self._ctx.session, self._mid)
        proc_id = _current_proc_id()
        if is_pin(handle):
            # A copy read back from a shared object: the stored one keeps its
            # pin; this one gets its own reference, so it outlives the container.
            handle = secrets.token_hex(6)
            if not refs.add_handle(self._oid, handle, proc_id or ""):
                return
        elif proc_id:
            # In a remote process: released when that process exits, even if it
            # is killed or ends with os._exit (no garbage collection there).
            refs.add_handle(self._oid, handle, proc_id)
        self._hold(handle)

    def __reduce__(self) -> Any:
        made = type(self).__dict__.get("_made_")
        if made is not None:  # a generated class: rebuild it on the other side
            return (_rebuild_made, (made, self._ctx, self._oid, self._getstate_extra()))
        adapted = type(self).__dict__.get("_adapted_")
        if adapted is not None:  # adapted from a stdlib proxy class: adapt it again there
            return (_rebuild_adapted, (adapted, self._ctx, self._oid, self._getstate_extra()))
        return super().__reduce__()

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self._getvalue()

    # -- plumbing ----------------------------------------------------------------
    def _keyname(self, suffix: str) -> str:
        return SharedObject.key(self, suffix)

    def _conn(self) -> _Conn:
        conn: _Conn | None = self.__dict__.get("_c")
        if conn is not None and not conn.session.closed:
            return conn
        if not self._ctx.running:
            raise ManagerShutdownError(
                f"{self._describe()}: the faasmp run it belonged to has ended (its context was shut down)"
            )
        session = self._ctx.session
        keys = [session.keys.k("mgr", self._mid)] + [self._keyname(s) for s in self._key_suffixes]
        conn = _Conn(session, keys)
        self.__dict__["_c"] = conn
        return conn

    def _call(self, source: str, *args: Any) -> Any:
        conn = self._conn()
        script = conn.scripts.get(source)
        if script is None:
            # The thread's own connection: a third of the pooled client's overhead
            # (Manager dict set p50 65 -> 36 us on loopback).
            script = conn.scripts[source] = conn.state.direct.script(source)
        result = script(keys=conn.keys, args=(conn.ttl, *args))
        if result.__class__ is int and result == -1:
            raise self._closed_error()
        return result

    def _closed_error(self) -> ManagerShutdownError:
        return ManagerShutdownError(
            f"{self._describe()}: its manager has shut down and deleted its shared objects (or "
            "they expired: nothing wrote to them for key_ttl)"
        )

    def _check_alive(self, conn: _Conn) -> None:
        """After a plain read found nothing: is that because the manager is gone?

        Reads are single commands (no Lua): a hit cannot happen after
        shutdown, which deletes every key atomically, so only misses check.
        """
        if not conn.state.exists(conn.keys[0]):
            raise self._closed_error()

    def _describe(self) -> str:
        return f"{type(self).__name__} for {self._typeid!r} object {self._oid}"

    def _dump(self, value: Any, what: str) -> bytes:
        pinning = _PINNING.set(self._oid)  # proxies inside the value are pinned, not handed out
        try:
            return dumps(value, self._conn().authkey)
        except Exception as exc:  # noqa: BLE001 - any pickling failure becomes one clear error
            raise pickling_failed(
                f"cannot store {what} in a manager {self._typeid!r}: {type(value).__name__} object "
                f"is not picklable ({type(exc).__name__}: {exc}). Shared objects live in Redis, "
                "so everything stored in them must pickle.",
                exc,
            ) from exc
        finally:
            _PINNING.reset(pinning)

    def _load(self, blob: bytes) -> Any:
        return loads(blob, self._conn().authkey)

    @property
    def _token(self) -> Token:
        return Token(self._typeid, _address(self._conn().session.run_id, self._mid), self._oid)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object, typeid {self._typeid!r} at {id(self):#x}>"

    def __str__(self) -> str:
        try:
            return repr(self._getvalue())
        except Exception as exc:  # noqa: BLE001 - str() of a broken proxy must not raise
            return repr(self)[:-1] + f"; '__str__()' failed: {exc}>"

    # -- the stdlib's proxy API ---------------------------------------------------
    def _check_exposed(self, methodname: str) -> None:
        exposed = self._exposed
        if exposed is not None and methodname not in exposed:
            raise _remote_error(
                AttributeError(
                    f"method {methodname!r} of {self._typeid!r} object is not in exposed={exposed!r}"
                )
            )

    def _callmethod(
        self, methodname: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None
    ) -> Any:
        """Call *methodname* of the referent and return the result.

        Runs in this process: the object is loaded, the method called and the
        object stored back while holding the object's Redis lock (blocks while
        another process is in a method of the same object).  A result whose
        method is in ``method_to_typeid`` becomes a new shared object of that
        typeid and a proxy for it is returned.
        """
        self._check_exposed(methodname)
        if self.__dict__.get("_served"):
            return self._served_call(methodname, args, kwds or {})
        token = secrets.token_hex(8)
        blob, cls_blob = self._acquire(token)
        try:
            obj = self._load_object(blob, cls_blob)
        except BaseException:
            self._release_lock(token, None)
            raise
        try:
            result = getattr(obj, methodname)(*args, **(kwds or {}))
        except BaseException:
            self._store_release(token, obj, blob)
            raise
        self._store_release(token, obj, blob)
        typeid = (self._method_to_typeid() or {}).get(methodname)
        if typeid is not None:
            result = self._wrap_result(typeid, result)
        return result

    def _served_call(self, methodname: str, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        """Call a method of a referent kept in the manager's process (see :class:`_LocalServer`)."""
        server = _LOCAL_SERVERS.get(self._mid)
        if server is not None:  # this is the manager's process: call it here
            result = server.call(self._oid, methodname, args, kwds)
        else:
            result = _LocalServer.request(self, methodname, args, kwds)
        typeid = (self._method_to_typeid() or {}).get(methodname)
        if typeid is not None:
            result = self._wrap_result(typeid, result)
        return result

    def _getvalue(self) -> Any:
        """A copy of the referent (reads it without taking the lock)."""
        if self.__dict__.get("_served"):
            return self._served_call("#GETVALUE", (), {})
        blob, cls_blob = self._call(_O_PEEK)
        if blob is None:
            raise ManagerShutdownError(f"{self._describe()}: its state no longer exists in Redis")
        return self._load_object(blob, cls_blob)

    # -- object state under a lease lock -----------------------------------------
    def _load_object(self, blob: bytes, cls_blob: bytes | None) -> Any:
        if not self._plain:
            return self._load(blob)
        cls = self.__dict__.get("_cls")
        if cls is None:
            if cls_blob is None:
                raise ManagerShutdownError(f"{self._describe()}: its class no longer exists in Redis")
            cls = self.__dict__["_cls"] = self._load(cls_blob)
        obj = cls.__new__(cls)
        obj.__dict__.update(self._load(blob))
        return obj

    def _dump_object(self, obj: Any) -> bytes:
        if self._plain and type(obj) is not self.__dict__.get("_cls"):
            raise TypeError(f"a method changed the object's class to {type(obj).__name__}")
        pinning = _PINNING.set(self._oid)  # proxies the referent holds are pinned
        try:
            return dumps(vars(obj) if self._plain else obj, self._conn().authkey)
        finally:
            _PINNING.reset(pinning)

    def _acquire(self, token: str) -> tuple[bytes, bytes | None]:
        """Take the object's lock (waiting in BLPOP); its state and, if needed, class."""
        lease_ms = int(self._lease * 1000)
        need_cls = "1" if self._plain and "_cls" not in self.__dict__ else "0"
        while True:
            result = self._call(_O_ACQUIRE, token, lease_ms, need_cls)
            if result[0] == 1:
                if result[1] is None:  # the state expired or was deleted
                    self._release_lock(token, None)
                    raise ManagerShutdownError(f"{self._describe()}: its state no longer exists in Redis")
                return result[1], result[2]
            pttl = int(result[1])
            wait = pttl / 1000 + 0.001 if pttl > 0 else 0.005
            conn = self._conn()
            conn.state.blpop([conn.keys[3]], max(wait, 0.005))  # woken by the holder's release

    def _release_lock(self, token: str, blob: bytes | None) -> None:
        ok = self._call(
            _O_RELEASE, token, "1" if blob is not None else "0", blob if blob is not None else b""
        )
        if ok != 1:
            raise RuntimeError(
                f"{self._describe()}: a method call held the object's lock longer than its "
                f"{self._lease:g} s lease and another process took it; this call's changes were not "
                "stored (raise BaseProxy._lease for long methods)"
            )

    def _store_release(self, token: str, obj: Any, old: bytes) -> None:
        try:
            new: bytes | None = self._dump_object(obj)
        except Exception as exc:  # noqa: BLE001 - report which object could not be stored
            self._release_lock(token, None)
            raise pickling_failed(
                f"{self._describe()}: after the method call the object could not be pickled "
                f"({type(exc).__name__}: {exc}); its change was not stored",
                exc,
            ) from exc
        self._release_lock(token, None if new == old else new)

    # -- method_to_typeid ---------------------------------------------------------
    def _method_to_typeid(self) -> dict[str, str] | None:
        if self._mcls is None:
            return type(self)._method_to_typeid_
        return self._mcls._registry_entry(self._typeid)[2]

    def _wrap_result(self, typeid: str, value: Any) -> Any:
        mcls = self._mcls if self._mcls is not None else SyncManager
        return _make_object(mcls, self._ctx, self._mid, typeid, None, value=value)


def _rebuild_made(made: tuple[str, tuple[str, ...], type], ctx: Any, oid: str, extra: dict[str, Any]) -> Any:
    from .runtime.shared import _rebuild  # noqa: PLC0415

    return _rebuild(MakeProxyType(*made), ctx, oid, extra)


class AutoProxy(BaseProxy):
    """Base of the proxy types made for registered classes (``proxytype=None``)."""


#: Attributes of a stdlib proxy class that belong to the stdlib's machinery
#: (connection, reference counting, pickling), not to the proxy's interface.
_STDLIB_PROXY_MACHINERY = frozenset(
    {"__init__", "__reduce__", "__deepcopy__", "__repr__", "__str__", "__dict__", "__weakref__",
     "__module__", "__qualname__", "__doc__", "_callmethod", "_getvalue", "_incref", "_decref",
     "_after_fork", "_connect"}
)  # fmt: skip


@functools.lru_cache(maxsize=64)
def _adapt_proxytype(proxytype: Any) -> Any:
    """A faasmp proxy type with the interface of a stdlib ``multiprocessing.managers.BaseProxy`` subclass.

    Code written for the stdlib registers its own proxy classes (e.g. an
    iterator proxy whose ``__next__`` calls ``self._callmethod('__next__')``).
    Their methods are copied onto a :class:`BaseProxy` subclass, so the same
    ``_callmethod`` calls act on the object kept in Redis.  Other types are
    returned unchanged.
    """
    import multiprocessing.managers as std  # noqa: PLC0415

    if not (isinstance(proxytype, type) and issubclass(proxytype, std.BaseProxy)):
        return proxytype
    if issubclass(proxytype, BaseProxy):  # faasmp's own BaseProxy patched in as the stdlib's
        return proxytype
    namespace: dict[str, Any] = {}
    for klass in reversed(proxytype.__mro__):
        if klass in std.BaseProxy.__mro__:
            continue
        namespace.update((k, v) for k, v in vars(klass).items() if k not in _STDLIB_PROXY_MACHINERY)
    namespace.update(_adapted_=proxytype, __module__=proxytype.__module__, __doc__=proxytype.__doc__)
    return type(proxytype.__name__, (BaseProxy,), namespace)


def _rebuild_adapted(proxytype: type, ctx: Any, oid: str, extra: dict[str, Any]) -> Any:
    from .runtime.shared import _rebuild  # noqa: PLC0415

    return _rebuild(_adapt_proxytype(proxytype), ctx, oid, extra)


@functools.lru_cache(maxsize=256)
def MakeProxyType(name: str, exposed: tuple[str, ...], base: type[BaseProxy] = BaseProxy) -> type[BaseProxy]:
    """A proxy type with one method per name in *exposed* calling :meth:`BaseProxy._callmethod`."""
    exposed = tuple(exposed)

    def method(meth: str) -> Callable[..., Any]:
        def call(self: BaseProxy, /, *args: Any, **kwds: Any) -> Any:
            return self._callmethod(meth, args, kwds)

        call.__name__ = call.__qualname__ = meth
        return call

    namespace: dict[str, Any] = {meth: method(meth) for meth in exposed}
    namespace.update(_exposed_=exposed, _made_=(name, exposed, base), __module__=__name__)
    return type(name, (base,), namespace)


class _NativeProxy(BaseProxy):
    """Proxies whose operations are native Redis structures (dict, list, ...)."""

    def _callmethod(
        self, methodname: str, args: tuple[Any, ...] = (), kwds: dict[str, Any] | None = None
    ) -> Any:
        """Call *methodname* (one of ``_exposed_``) with the stdlib's calling convention."""
        self._check_exposed(methodname)
        return getattr(self, methodname)(*args, **(kwds or {}))


class DictProxy(_NativeProxy, MutableMapping):  # type: ignore[type-arg]
    """A dict in a Redis hash; ``keys()``/``values()``/``items()`` return lists.

    Iteration walks a snapshot of the keys (no ``RuntimeError`` if the dict
    changes meanwhile).  ``d == other`` compares contents (the stdlib proxy
    compares identity).  See the module docstring for which keys work.
    """

    _kind = "mdict"
    _key_suffixes = ("", "order")
    _exposed_ = (
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__iter__",
        "__len__",
        "__setitem__",
        "clear",
        "copy",
        "get",
        "items",
        "keys",
        "pop",
        "popitem",
        "setdefault",
        "update",
        "values",
    )

    def _adopt(self, value: Any) -> None:
        if value:
            self.update(value)

    def _field(self, key: Any) -> bytes:
        return _encode_key(key, self._conn().authkey)

    def __getitem__(self, key: Any) -> Any:
        conn = self._conn()
        blob = conn.state.direct.execute("HGET", conn.keys[1], _encode_key(key, conn.authkey))
        if blob is None:
            self._check_alive(conn)
            raise KeyError(key)
        return loads(blob, conn.authkey)

    def get(self, key: Any, default: Any = None) -> Any:
        conn = self._conn()
        blob = conn.state.hget(conn.keys[1], _encode_key(key, conn.authkey))
        if blob is None:
            self._check_alive(conn)
            return default
        return loads(blob, conn.authkey)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._call(_D_SET, self._field(key), self._dump(value, f"the value for key {key!r}"))

    def __delitem__(self, key: Any) -> None:
        if self._call(_D_POP, self._field(key)) is None:
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        conn = self._conn()
        if conn.state.hexists(conn.keys[1], _encode_key(key, conn.authkey)):
            return True
        self._check_alive(conn)
        return False

    def __len__(self) -> int:
        conn = self._conn()
        n = int(conn.state.hlen(conn.keys[1]))
        if n == 0:
            self._check_alive(conn)
        return n

    def __iter__(self) -> Iterator[Any]:
        """An iterator over the keys, like the stdlib proxy's (an iterator in the server).

        The keys are read when the iterator is made; as with a dict, ``next``
        raises ``RuntimeError`` if the dict's size changed since then (checked
        on the first ``next``, every 256 keys and at the end).
        """
        return _DictKeyIterator(self, self.keys())

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self.keys())

    def keys(self) -> list[Any]:  # type: ignore[override]
        """The keys in insertion order (a list, like the stdlib proxy)."""
        ak = self._conn().authkey
        return [_decode_key(f, ak) for f in self._call(_D_KEYS)]

    def _items_raw(self) -> tuple[list[bytes], list[bytes]]:
        fields, blobs = self._call(_D_ITEMS)
        return fields, blobs

    def values(self) -> list[Any]:  # type: ignore[override]
        return [self._load(b) for b in self._items_raw()[1]]

    def items(self) -> list[tuple[Any, Any]]:  # type: ignore[override]
        ak = self._conn().authkey
        fields, blobs = self._items_raw()
        return [(_decode_key(f, ak), self._load(b)) for f, b in zip(fields, blobs, strict=True)]

    def setdefault(self, key: Any, default: Any = None) -> Any:
        """Atomic: of several concurrent callers exactly one inserts."""
        result = self._call(
            _D_SETDEFAULT, self._field(key), self._dump(default, f"the value for key {key!r}")
        )
        if result.__class__ is int:
            return default
        return self._load(result)

    _MISSING: ClassVar[Any] = object()

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        blob = self._call(_D_POP, self._field(key))
        if blob is None:
            if default is DictProxy._MISSING:
                raise KeyError(key)
            return default
        return self._load(blob)

    def popitem(self) -> tuple[Any, Any]:
        """Remove and return the last inserted item (LIFO, like dict)."""
        result = self._call(_D_POPITEM)
        if result.__class__ is int:
            raise KeyError("popitem(): dictionary is empty")
        return _decode_key(result[0], self._conn().authkey), self._load(result[1])

    def update(self, other: Any = (), /, **kwds: Any) -> None:
        """Set several items in one atomic step."""
        ak = self._conn().authkey
        args: list[bytes] = []
        if isinstance(other, Mapping) or hasattr(other, "keys"):
            pairs: Iterable[Any] = ((k, other[k]) for k in other.keys())
        else:
            pairs = other
        for i, item in enumerate(pairs):
            try:
                pair = tuple(item)
            except TypeError:
                raise TypeError(
                    f"cannot convert dictionary update sequence element #{i} to a sequence"
                ) from None
            if len(pair) != 2:
                raise ValueError(
                    f"dictionary update sequence element #{i} has length {len(pair)}; 2 is required"
                )
            k, v = pair
            args += (_encode_key(k, ak), self._dump(v, f"the value for key {k!r}"))
        for k, v in kwds.items():
            args += (_encode_key(k, ak), self._dump(v, f"the value for key {k!r}"))
        if args:
            self._call(_D_SET, *args)

    def clear(self) -> None:
        self._call(_D_CLEAR)

    def copy(self) -> dict[Any, Any]:
        """A plain dict with the current contents (one round trip)."""
        return dict(self.items())

    _getvalue = copy


class _DictKeyIterator(Iterator[Any]):
    """What ``iter(dict_proxy)`` returns (see :meth:`DictProxy.__iter__`)."""

    _CHECK_EVERY = 256

    def __init__(self, proxy: DictProxy, keys: list[Any]) -> None:
        self._proxy: DictProxy | None = proxy
        self._keys = keys
        self._pos = 0

    def __next__(self) -> Any:
        proxy = self._proxy
        if proxy is None:
            raise StopIteration
        pos = self._pos
        if pos % self._CHECK_EVERY == 0 or pos == len(self._keys):
            conn = proxy._conn()
            if int(conn.state.hlen(conn.keys[1])) != len(self._keys):
                self._proxy = None
                raise RuntimeError("dictionary changed size during iteration")
        if pos == len(self._keys):
            self._proxy = None
            raise StopIteration
        self._pos = pos + 1
        return self._keys[pos]


class _ListIterator(Iterator[Any]):
    """What ``iter(list_proxy)`` returns (see :meth:`ListProxy.__iter__`)."""

    _CHUNK = 256

    def __init__(self, proxy: ListProxy) -> None:
        self._proxy: ListProxy | None = proxy
        self._index = 0
        self._buffer: list[bytes] = []
        self._chunk = 16

    def __next__(self) -> Any:
        proxy = self._proxy
        if proxy is None:
            raise StopIteration
        if not self._buffer:
            start = self._index
            self._buffer = list(proxy._call(_L_RANGE, start, start + self._chunk))[::-1]
            self._chunk = min(self._chunk * 2, self._CHUNK)
            if not self._buffer:
                self._proxy = None
                raise StopIteration
        self._index += 1
        return proxy._load(self._buffer.pop())


def _list_error(code: int, message: str) -> None:
    if code == -2:
        raise IndexError(message)
    if code == -3:
        raise IndexError("pop from empty list")


class ListProxy(_NativeProxy, MutableSequence):  # type: ignore[type-arg]
    """A list in a Redis list.  Slices, ``+`` and ``*`` return plain lists.

    ``sort``, ``remove`` and slice assignment/deletion are read-compute-write
    with a version check (retried if another process changed the list
    meanwhile); everything else is one atomic Lua script.  ``sort``'s key
    function runs in this process.  Iteration walks a snapshot.
    """

    _kind = "mlist"
    _key_suffixes = ("", "v")
    _exposed_ = (
        "__add__",
        "__contains__",
        "__delitem__",
        "__getitem__",
        "__len__",
        "__mul__",
        "__reversed__",
        "__rmul__",
        "__setitem__",
        "append",
        "count",
        "extend",
        "index",
        "insert",
        "pop",
        "remove",
        "reverse",
        "sort",
        "__imul__",
        "__iadd__",
        "__iter__",
        "clear",
        "copy",
    )
    _MAX_RETRIES: ClassVar[int] = 1000

    def _adopt(self, value: Any) -> None:
        self.extend(value)

    # -- reading ---------------------------------------------------------------
    def _raw(self) -> tuple[bytes, list[bytes]]:
        version, raw = self._call(_L_SNAPSHOT)
        return version, raw

    def _getvalue(self) -> list[Any]:
        return [self._load(b) for b in self._raw()[1]]

    copy = _getvalue

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            if index.step is None or index.step == 1:
                start = "" if index.start is None else _clamp(index.start)
                stop = "" if index.stop is None else _clamp(index.stop)
                return [self._load(b) for b in self._call(_L_RANGE, start, stop)]
            return [self._load(b) for b in self._raw()[1][index]]
        conn = self._conn()
        blob = conn.state.lindex(conn.keys[1], _clamp(index, True))
        if blob is None:
            self._check_alive(conn)
            raise IndexError("list index out of range")
        return loads(blob, conn.authkey)

    def __len__(self) -> int:
        conn = self._conn()
        n = int(conn.state.llen(conn.keys[1]))
        if n == 0:
            self._check_alive(conn)
        return n

    def __iter__(self) -> Iterator[Any]:
        """A live iterator, like the stdlib proxy's (a list iterator in the server).

        Items are read as the iteration reaches them (in chunks of up to 256),
        so changes to items not yet read are seen; once exhausted it stays
        exhausted.
        """
        return _ListIterator(self)

    def __reversed__(self) -> Iterator[Any]:
        return reversed(self._getvalue())

    def __contains__(self, value: object) -> bool:
        return value in self._getvalue()

    def index(self, value: Any, start: int = 0, stop: int = sys.maxsize) -> int:
        return self._getvalue().index(value, start, stop)

    def count(self, value: Any) -> int:
        return self._getvalue().count(value)

    def __add__(self, other: Any) -> list[Any]:
        if isinstance(other, ListProxy):
            other = other._getvalue()
        return self._getvalue() + other

    def __radd__(self, other: Any) -> list[Any]:
        if not isinstance(other, list):
            return NotImplemented
        return other + self._getvalue()

    def __mul__(self, n: Any) -> list[Any]:
        return self._getvalue() * n

    __rmul__ = __mul__

    # -- writing ---------------------------------------------------------------
    def append(self, value: Any) -> None:
        self._call(_L_PUSH, self._dump(value, "an item"))

    def extend(self, values: Iterable[Any]) -> None:
        """Append every item of *values* in one atomic step."""
        if isinstance(values, ListProxy):
            values = values._getvalue()
        blobs = [self._dump(v, "an item") for v in values]
        if blobs:
            self._call(_L_PUSH, *blobs)

    def __iadd__(self, values: Iterable[Any]) -> ListProxy:  # type: ignore[misc]
        self.extend(values)
        return self

    def __imul__(self, n: Any) -> ListProxy:
        self._call(_L_IMUL, operator.index(n))
        return self

    def insert(self, index: Any, value: Any) -> None:
        self._call(_L_INSERT, _clamp(index), self._dump(value, "an item"))

    def pop(self, index: Any = -1) -> Any:
        result = self._call(_L_POP, _clamp(index))
        if result.__class__ is int:
            _list_error(result, "pop index out of range")
        return self._load(result)

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            if isinstance(value, ListProxy):
                value = value._getvalue()
            try:
                items = list(value)
            except TypeError:
                raise TypeError("must assign iterable to extended slice") from None
            blobs = [self._dump(v, "an item") for v in items]

            def assign(raw: list[bytes]) -> None:
                raw[index] = blobs

            self._rewrite(assign)
            return
        result = self._call(_L_SET, _clamp(index, True), self._dump(value, "an item"))
        if result != 1:
            _list_error(result, "list assignment index out of range")

    def __delitem__(self, index: Any) -> None:
        if isinstance(index, slice):

            def delete(raw: list[bytes]) -> None:
                del raw[index]

            self._rewrite(delete)
            return
        result = self._call(_L_POP, _clamp(index, True))
        if result.__class__ is int:
            _list_error(-2, "list assignment index out of range")

    def remove(self, value: Any) -> None:
        def remove(raw: list[bytes]) -> None:
            for i, blob in enumerate(raw):
                item = self._load(blob)
                if item is value or item == value:
                    del raw[i]
                    return
            raise ValueError("list.remove(x): x not in list")

        self._rewrite(remove)

    def reverse(self) -> None:
        self._call(_L_REVERSE)

    def sort(self, *, key: Callable[[Any], Any] | None = None, reverse: bool = False) -> None:
        """Sort in place (stable); *key* runs in this process."""

        def sort(raw: list[bytes]) -> None:
            values = [self._load(b) for b in raw]
            keys = values if key is None else [key(v) for v in values]
            order = sorted(range(len(raw)), key=keys.__getitem__, reverse=reverse)
            raw[:] = [raw[i] for i in order]

        self._rewrite(sort)

    def clear(self) -> None:
        self._call(_L_CLEAR)

    def _rewrite(self, change: Callable[[list[bytes]], None]) -> None:
        """Apply *change* to a snapshot and store it if the list did not change meanwhile."""
        for _ in range(self._MAX_RETRIES):
            version, raw = self._raw()
            raw = list(raw)
            change(raw)
            if self._call(_L_REPLACE, version, *raw) == 1:
                return
        raise RuntimeError(
            f"{self._describe()}: gave up after {self._MAX_RETRIES} attempts because other "
            "processes kept changing the list; guard it with a manager Lock"
        )


def _clamp(index: Any, subscript: bool = False) -> int:
    """A Python index as an int Lua can hold (beyond the list either way)."""
    try:
        i = operator.index(index)
    except TypeError:
        if not subscript:
            raise
        raise TypeError(f"list indices must be integers or slices, not {type(index).__name__}") from None
    return max(min(i, 1 << 50), -(1 << 50))


class NamespaceProxy(_NativeProxy):
    """Attributes stored in a Redis hash; names starting with ``_`` stay local.

    ``repr()`` shows the contents, like ``Namespace(a=1, b=2)``.
    """

    _kind = "mns"
    _key_suffixes = ("",)
    _exposed_ = ("__getattribute__", "__setattr__", "__delattr__")

    def _adopt(self, value: Any) -> None:
        for name, v in (value if isinstance(value, Mapping) else vars(value)).items():
            if not name.startswith("_"):
                setattr(self, name, v)

    def __getattribute__(self, name: str) -> Any:
        if name[0] == "_":
            return object.__getattribute__(self, name)
        conn = self._conn()
        blob = conn.state.hget(conn.keys[1], name.encode("utf-8", "surrogatepass"))
        if blob is None:
            self._check_alive(conn)
            raise AttributeError(f"'Namespace' object has no attribute {name!r}")
        return self._load(blob)

    def __setattr__(self, name: str, value: Any) -> None:
        if name[0] == "_":
            object.__setattr__(self, name, value)
            return
        self._call(_H_SET, name.encode("utf-8", "surrogatepass"), self._dump(value, f"attribute {name!r}"))

    def __delattr__(self, name: str) -> None:
        if name[0] == "_":
            object.__delattr__(self, name)
            return
        if not self._call(_H_DEL, name.encode("utf-8", "surrogatepass")):
            raise AttributeError(f"'Namespace' object has no attribute {name!r}")

    def _getvalue(self) -> Namespace:
        flat = self._call(_H_ALL)
        it = iter(flat)
        return Namespace(
            **{f.decode("utf-8", "surrogatepass"): self._load(b) for f, b in zip(it, it, strict=True)}
        )

    def __repr__(self) -> str:
        return repr(self._getvalue())

    __str__ = __repr__

    def __dir__(self) -> list[str]:
        return sorted(set(object.__dir__(self)) | set(vars(self._getvalue())))


class ValueProxy(_NativeProxy):
    """A manager ``Value``: ``get()``, ``set()`` and ``.value`` on one Redis key.

    As with the stdlib, ``v.value += 1`` is a read then a write (not atomic);
    use a manager ``Lock`` around it, or a :func:`faasmp.Value` with its lock.
    """

    _kind = "mval"
    _key_suffixes = ("",)
    _exposed_ = ("get", "set")
    _typecode: Any = None

    def _adopt(self, value: Any) -> None:
        if isinstance(value, Value):
            self.__dict__["_typecode"] = value._typecode
            value = value._value
        self.set(value)

    def _getstate_extra(self) -> dict[str, Any]:
        extra = super()._getstate_extra()
        extra["_typecode"] = self._typecode
        return extra

    def get(self) -> Any:
        conn = self._conn()
        blob = conn.state.get(conn.keys[1])
        if blob is None:
            self._check_alive(conn)
            raise ManagerShutdownError(f"{self._describe()}: its value no longer exists in Redis")
        return loads(blob, conn.authkey)

    def set(self, value: Any) -> None:
        self._call(_V_SET, self._dump(value, "the value"))

    value = property(get, set)

    def _getvalue(self) -> Value:
        return Value(self._typecode, self.get())

    __class_getitem__: ClassVar[Any] = classmethod(types.GenericAlias)


# ---------------------------------------------------------------------------
# Object creation
# ---------------------------------------------------------------------------


class Direct:
    """Marker ``proxytype`` for objects that are shared by themselves.

    The registered callable is called as ``callable(*args, ctx=context,
    **kwds)`` and must return a faasmp shared object (a ``Lock``, ``Queue``,
    ...); it is handed out as is.  It lives as long as that object in the process
    that made it, and the manager releases it at shutdown if it is still alive.
    """


_NO_VALUE: Any = object()


@functools.lru_cache(maxsize=64)
def _remote_error_type(original: type) -> type[Exception]:
    """``multiprocessing.managers.RemoteError`` combined with *original* (if their layouts allow)."""
    from multiprocessing.managers import RemoteError  # noqa: PLC0415

    if not issubclass(original, Exception):
        return RemoteError
    try:
        return type("RemoteError", (RemoteError, original), {"__module__": __name__})
    except TypeError:
        return RemoteError


def _remote_error(exc: BaseException) -> Exception:
    """The error a stdlib manager server reports as ``RemoteError`` for *exc*.

    The stdlib's server turns an error in creating an object or a call of an
    unexposed method into :class:`multiprocessing.managers.RemoteError`
    carrying the server's traceback; faasmp has no server, so the error is
    also an instance of *exc*'s type (``except ValueError`` keeps working).
    """
    import traceback  # noqa: PLC0415

    text = "".join(traceback.format_exception(exc)) if exc.__traceback__ else f"{type(exc).__name__}: {exc}\n"
    tp: type = type(exc)
    try:
        err = _remote_error_type(tp)(text)
    except Exception:  # noqa: BLE001 - an error type with a special constructor
        from multiprocessing.managers import RemoteError  # noqa: PLC0415

        err = RemoteError(text)
    return err


def _create_value(callable_: Callable[..., Any], args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
    """Call a registered callable; its errors become ``RemoteError`` as from a stdlib server."""
    try:
        return callable_(*args, **kwds)
    except Exception as exc:
        raise _remote_error(exc) from exc


def _make_object(
    mcls: type[BaseManager],
    ctx: FaasContext,
    mid: str,
    typeid: str,
    manager: BaseManager | None,
    args: tuple[Any, ...] = (),
    kwds: dict[str, Any] | None = None,
    *,
    value: Any = _NO_VALUE,
) -> Any:
    """Create a shared object of *typeid* (from its callable, or adopting *value*)."""
    kwds = kwds or {}
    callable_, exposed, method_to_typeid, proxytype = mcls._registry_entry(typeid)
    if proxytype is Direct:
        given = {id(a) for a in (*args, *kwds.values())}
        if value is _NO_VALUE:
            if callable_ is None:
                raise TypeError(f"typeid {typeid!r} has no callable to create objects with")
            value = _create_value(callable_, args, {**kwds, "ctx": ctx})
        parts = _shared_parts(value, given)
        _register_keys(ctx, mid, parts)
        _track_direct(ctx, mid, typeid, value, parts)
        if manager is not None and manager._kind is _Kind.OWNER:
            # Weakly: like any faasmp object it lives while this process holds
            # it; the manager releases what is left at shutdown.
            manager._objects.extend(weakref.ref(p) for p in parts)
            if not parts and hasattr(value, "terminate"):  # a Pool
                manager._objects.append(weakref.ref(value))
        return value
    if value is _NO_VALUE:
        if callable_ is None:
            if kwds or len(args) != 1:
                raise ValueError("Without callable, must have one non-keyword argument")
            value = args[0]
        else:
            value = _create_value(callable_, args, kwds)
    if proxytype is AutoProxy:
        names = tuple(exposed) if exposed is not None else tuple(public_methods(value))
        ptype: type[BaseProxy] = MakeProxyType(f"AutoProxy[{typeid}]", names, AutoProxy)
    else:
        ptype = proxytype
    proxy = ptype._new(ctx, mid, typeid, manager)
    if exposed is not None and not issubclass(ptype, _NativeProxy):
        proxy.__dict__["_exposed"] = tuple(exposed)
    elif ptype._exposed_ is None and not issubclass(ptype, _NativeProxy):
        proxy.__dict__["_exposed"] = tuple(public_methods(value))
    if method_to_typeid:
        proxy.__dict__["_mcls"] = mcls
    proxy._register()
    # Counted before its value is stored: proxies inside the value are pinned
    # to it, and a pin counts only while its container is a live object.
    proxy._track()
    proxy._adopt(value)
    return proxy


def _track_direct(ctx: FaasContext, mid: str, typeid: str, value: Any, parts: list[SharedObject]) -> None:
    """Count a directly shared object (a Lock, Queue, Pool...) as live while its owner holds it."""
    session = ctx.session
    oid, handle = secrets.token_hex(8), secrets.token_hex(6)
    keys = [p.key(s) for p in parts for s in p._key_suffixes]
    try:
        weakref.ref(value)
    except TypeError:
        return  # cannot tell when it dies: not counted (released at shutdown)
    if _refs(session, mid).add_object(oid, typeid, keys, handle):
        weakref.finalize(value, _drop_ref, session, mid, oid, handle)


def _shared_parts(obj: Any, given: set[int]) -> list[SharedObject]:
    """The shared objects *obj* consists of (itself, or a wrapper's lock and data).

    Objects the caller passed in (*given*, by id), e.g. a Condition's lock, are
    not the manager's to delete.
    """
    parts: list[SharedObject] = []
    seen = set(given)
    for candidate in (obj, *getattr(obj, "__dict__", {}).values()):
        if isinstance(candidate, SharedObject) and id(candidate) not in seen:
            seen.add(id(candidate))
            parts.append(candidate)
    return parts


def _register_keys(ctx: FaasContext, mid: str, parts: list[SharedObject]) -> None:
    """Record the keys of directly shared objects with manager *mid* (deleted at its shutdown)."""
    keys = [p.key(s) for p in parts for s in p._key_suffixes]
    if not keys:
        return
    session = ctx.session
    script = session.state.script(_REGISTER)
    if script(keys=[session.keys.k("mgr", mid)], args=[int(session.config.key_ttl * 1000), *keys]) == -1:
        raise ManagerShutdownError(f"manager {mid} has shut down; no more objects can be made with it")


# ---------------------------------------------------------------------------
# Managers
# ---------------------------------------------------------------------------


class State:
    """The manager's state (``manager._state.value``), as in the stdlib."""

    __slots__ = ("value",)
    INITIAL = 0
    STARTED = 1
    SHUTDOWN = 2

    def __init__(self) -> None:
        self.value = State.INITIAL


_ADDRESS_PREFIX = "faasmp:"


def _address(run_id: str, mid: str) -> str:
    return f"{_ADDRESS_PREFIX}{run_id}/{mid}"


#: The running local servers of this process, by manager id.
_LOCAL_SERVERS: weakref.WeakValueDictionary[str, _LocalServer] = weakref.WeakValueDictionary()


class _LocalServer:
    """Serves the referents a manager could not store in Redis, from the manager's process.

    A registered type whose objects do not pickle (a generator, an object
    holding an open file or a thread lock) cannot live in Redis.  Like the
    stdlib's manager server, the process that created the manager then keeps
    the object, and a thread serves method calls from other processes: a
    caller pushes a signed request on the manager's request list and blocks in
    ``BLPOP`` on its own reply list; the thread blocks in ``BLPOP`` on the
    request list.  Calls in the manager's own process run directly.  Calls on
    one object are serialized.  The objects die with the manager (shutdown) or
    with its process; callers then get :class:`ManagerShutdownError`.
    """

    _BEAT = 1.0  # seconds between liveness renewals while idle

    def __init__(self, session: Any, mid: str) -> None:
        self.session = session
        self.mid = mid
        k = session.keys
        self.request_key = k.k("mgr", mid, "srv")
        self.alive_key = k.k("mgr", mid, "srv", "alive")
        self.objects: dict[str, Any] = {}
        self.lock = threading.RLock()
        self._stopping = False
        self._renew()
        _LOCAL_SERVERS[mid] = self
        self._thread = threading.Thread(target=self._serve, name=f"faasmp-manager-{mid}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        self.session.state.set(self.alive_key, b"1", px=int(self._BEAT * 5000))

    def keep(self, oid: str, value: Any) -> None:
        with self.lock:
            self.objects[oid] = value

    def forget(self, oid: str) -> None:
        """The object's last reference is gone: drop it (as the stdlib's server does)."""
        with self.lock:
            self.objects.pop(oid, None)

    def call(self, oid: str, methodname: str, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        with self.lock:
            try:
                obj = self.objects[oid]
            except KeyError:
                raise ManagerShutdownError(
                    f"manager object {oid} no longer exists (its manager shut down)"
                ) from None
            if methodname == "#GETVALUE":
                return obj
            return getattr(obj, methodname)(*args, **kwds)

    def _serve(self) -> None:
        state = self.session.state
        authkey = self.session.authkey
        while not self._stopping and not self.session.closed:
            try:
                item = state.blpop([self.request_key], self._BEAT)
                self._renew()
            except Exception:  # noqa: BLE001 - the run is ending
                return
            if item is None:
                continue
            try:
                reply_key, oid, methodname, args, kwds = loads(item[1], authkey)
            except Exception:  # noqa: BLE001 - an unsigned or stop message
                continue
            try:
                reply: tuple[bool, Any] = (True, self.call(oid, methodname, args, kwds))
            except BaseException as exc:  # noqa: BLE001 - sent to the caller, like the stdlib's server
                reply = (False, exc)
            try:
                blob = dumps(reply, authkey)
            except Exception as exc:  # noqa: BLE001
                what = "result" if reply[0] else "exception"
                err = pickling_failed(
                    f"the {what} of {methodname}() of manager object {oid} could not be sent back: "
                    f"{type(exc).__name__}: {exc}",
                    exc,
                )
                blob = dumps((False, err), authkey)
            with contextlib.suppress(Exception):
                pipe = state.pipeline()
                pipe.rpush(reply_key, blob)
                pipe.pexpire(reply_key, 60_000)
                pipe.execute()

    def terminate(self) -> None:
        """Stop serving and drop the objects (the manager shut down)."""
        self._stopping = True
        _LOCAL_SERVERS.pop(self.mid, None)
        with self.lock:
            self.objects.clear()
        with contextlib.suppress(Exception):
            self.session.state.delete(self.alive_key, self.request_key)

    @classmethod
    def request(cls, proxy: BaseProxy, methodname: str, args: tuple[Any, ...], kwds: dict[str, Any]) -> Any:
        """Call *methodname* on a referent served by another process; blocks in Redis."""
        conn = proxy._conn()
        state, k = conn.state, conn.session.keys
        request_key = k.k("mgr", proxy._mid, "srv")
        alive_key = k.k("mgr", proxy._mid, "srv", "alive")
        reply_key = k.k("mgr", proxy._mid, "reply", secrets.token_hex(8))
        blob = dumps((reply_key, proxy._oid, methodname, args, kwds), conn.authkey)
        pipe = state.pipeline()
        pipe.exists(conn.keys[0])
        pipe.rpush(request_key, blob)
        pipe.pexpire(request_key, conn.ttl)
        if not pipe.execute()[0]:
            state.delete(request_key)
            raise proxy._closed_error()
        while True:
            item = state.blpop([reply_key], cls._BEAT * 2)
            if item is not None:
                break
            if not state.exists(alive_key):  # the manager's process stopped serving
                raise ManagerShutdownError(
                    f"{proxy._describe()}: the object lives in the process that created its manager "
                    "(it cannot be pickled into Redis), and that process no longer serves it "
                    "(the manager shut down or the process ended)"
                )
        ok, value = loads(item[1], conn.authkey)
        if not ok:
            raise value
        return value


class _ServerHandle:
    """What ``manager._process`` is: a stand-in for the stdlib's server process handle.

    faasmp managers have no server process (objects live in Redis, or are
    served by a thread of the owner process, see :class:`_LocalServer`);
    ``exitcode`` is ``None`` while the manager runs and ``0`` once it shut down.
    """

    def __init__(self, manager: BaseManager) -> None:
        self._state = manager._state
        self.pid = os.getpid()
        self.name = f"{type(manager).__name__}-{manager._mid}"

    @property
    def exitcode(self) -> int | None:
        return 0 if self._state.value == State.SHUTDOWN else None

    def is_alive(self) -> bool:
        return self._state.value == State.STARTED

    def join(self, timeout: float | None = None) -> None:
        """Nothing to wait for: shutdown is one Redis script."""

    def __repr__(self) -> str:
        return f"<faasmp manager server {self.name} exitcode={self.exitcode}>"


class _Kind(enum.Enum):
    OWNER = "owner"
    CONNECTED = "connected"


def _shutdown_manager(session: Any, mid: str, objects: list[Any]) -> None:
    """Delete every object of manager *mid* (its finalizer; runs once)."""
    try:
        if not session.closed:
            k = session.keys
            script = session.state.script(_MGR_SHUTDOWN)
            script(keys=[k.k("mgr", mid), k.k("mgr", mid, "closed")], args=[60_000])
    finally:
        for entry in reversed(objects):
            obj: Any = entry() if isinstance(entry, weakref.ref) else entry
            try:
                if obj is None:  # already collected: its own finalizer released it
                    continue
                if isinstance(obj, SharedObject):
                    obj._release()
                elif hasattr(obj, "terminate"):
                    obj.terminate()
            except Exception:  # noqa: BLE001, S110 - best effort: the run may be ending
                pass
        objects.clear()


class BaseManager:
    """Creates shared objects whose state lives in Redis (no server process).

    Same API as :class:`multiprocessing.managers.BaseManager`; differences:

    * ``start()`` starts no process: it reserves the manager's id in Redis
      and runs *initializer* here (in the stdlib it runs in the manager
      process, whose globals nobody else sees).
    * ``address`` is ``'faasmp:<run id>/<manager id>'``.  Passing it (or a
      plain name, which becomes the manager id) to another manager of the
      same run and calling ``connect()`` attaches to the same objects; the
      stdlib's ``(host, port)`` addresses are refused (there is no socket).
    * *authkey* (bytes) must match between ``start()`` and ``connect()``
      (else :class:`multiprocessing.AuthenticationError`); payloads are in
      any case signed with the run's key.  Only ``serializer='pickle'``.
    * Managers pickle (as connected managers) once started, so one can be
      passed to a process that creates more objects with it.
    * *shutdown_timeout* is accepted for compatibility; shutdown is one
      atomic Redis script, nothing to wait for.
    """

    _registry: ClassVar[dict[str, tuple[Any, Any, Any, Any]]] = {}

    def __init__(
        self,
        address: Any = None,
        authkey: bytes | None = None,
        serializer: str = "pickle",
        ctx: Any = None,
        *,
        shutdown_timeout: float = 1.0,
    ) -> None:
        if serializer != "pickle":
            raise ValueError(
                f"unknown serializer {serializer!r}: faasmp managers store signed pickles only ('pickle')"
            )
        if authkey is not None and not isinstance(authkey, bytes | bytearray | memoryview):
            raise TypeError(f"authkey should be a byte string, not {type(authkey).__name__}")
        self._address = address
        self._run_id, self._mid = _parse_address(address)
        self._authkey = bytes(authkey) if authkey is not None else None
        self._serializer = serializer
        self._ctx: FaasContext = ctx if ctx is not None else _default_ctx()
        self._shutdown_timeout = shutdown_timeout
        self._state = State()
        self._kind: _Kind | None = None
        # What to release at shutdown: weak references to directly shared
        # objects (and pools), and the local server.
        self._objects: list[Any] = []
        self._finalizer: weakref.finalize | None = None  # type: ignore[type-arg]
        self._session: Any = None
        self._process: _ServerHandle | None = None

    # -- lifecycle ------------------------------------------------------------------
    def _check_initial(self) -> None:
        if self._state.value == State.STARTED:
            raise ProcessError("Already started server")
        if self._state.value == State.SHUTDOWN:
            raise ProcessError("Manager has shut down")

    def _attach(self) -> Any:
        session = self._ctx.session
        if self._run_id is not None and self._run_id != session.run_id:
            raise ValueError(
                f"manager address {self._address!r} belongs to faasmp run {self._run_id}, "
                f"but this context runs {session.run_id}; managers are shared within one run"
            )
        self._session = session
        return session

    def _auth_member(self, session: Any) -> str:
        key = self._authkey if self._authkey is not None else b""
        return "@auth:" + hmac.new(session.authkey, b"manager-authkey:" + key, hashlib.sha256).hexdigest()

    def _mgr_keys(self) -> list[str]:
        k = self._session.keys
        return [k.k("mgr", self._mid), k.k("mgr", self._mid, "closed")]

    def start(self, initializer: Callable[..., Any] | None = None, initargs: Iterable[Any] = ()) -> None:
        """Make the manager ready to create objects; runs *initializer(*initargs)* here first."""
        self._check_initial()
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        session = self._attach()
        if self._mid is None:
            self._mid = secrets.token_hex(8)
        if initializer is not None:
            initializer(*initargs)
        ttl = int(session.config.key_ttl * 1000)
        if not session.state.script(_MGR_START)(
            keys=self._mgr_keys(), args=[ttl, self._auth_member(session)]
        ):
            raise OSError(errno.EADDRINUSE, f"a faasmp manager is already running at {self.address!r}")
        self._kind = _Kind.OWNER
        self._state.value = State.STARTED
        self._process = _ServerHandle(self)
        self._finalizer = weakref.finalize(self, _shutdown_manager, session, self._mid, self._objects)

    def _local_server(self) -> _LocalServer:
        """The thread serving this manager's unpicklable objects (started on first use)."""
        server = _LOCAL_SERVERS.get(self._mid or "")
        if server is None:
            assert self._mid is not None
            server = _LocalServer(self._session, self._mid)
            self._objects.append(server)  # terminated at shutdown
        return server

    def connect(self) -> None:
        """Attach to the objects of the started manager at ``address`` (same run).

        Raises :class:`ConnectionRefusedError` if no manager runs there and
        :class:`multiprocessing.AuthenticationError` if the authkey differs.
        """
        if self._mid is None:
            raise ValueError("connect() needs the address of a started manager (its .address)")
        session = self._attach()
        ttl = int(session.config.key_ttl * 1000)
        result = session.state.script(_MGR_CONNECT)(
            keys=self._mgr_keys(), args=[ttl, self._auth_member(session)]
        )
        if result == 0:
            raise ConnectionRefusedError(
                f"no faasmp manager at {self.address!r}: it has shut down or was never started"
            )
        if result == -1:
            raise AuthenticationError(
                f"digest received was wrong: the authkey differs from the manager's at {self.address!r}"
            )
        self._kind = _Kind.CONNECTED
        self._state.value = State.STARTED

    def shutdown(self) -> None:
        """Delete every object this manager created (owner) or detach (connected).

        Afterwards their proxies raise :class:`ManagerShutdownError` in every
        process; directly shared objects (locks, queues, ...) are released and
        pools terminated.  Calling it again does nothing.
        """
        if self._state.value != State.STARTED:
            if self._state.value == State.INITIAL:
                self._state.value = State.SHUTDOWN
            return
        self._state.value = State.SHUTDOWN
        if self._finalizer is not None:
            self._finalizer()

    def _live_objects(self) -> list[tuple[str, str, int, int]]:
        if self._state.value != State.STARTED or self._session is None or self._session.closed:
            shut = self._state.value == State.SHUTDOWN
            raise ProcessError("Manager has shut down" if shut else "Manager has not been started")
        assert self._mid is not None
        return _refs(self._session, self._mid).live()

    def _number_of_objects(self) -> int:
        """How many of this manager's shared objects are alive, as the stdlib's server counts them.

        An object is alive while a proxy of it exists in some process (or a
        copy is on its way to one, or it is stored inside another shared
        object); the objects of remote processes that have exited no longer
        count.  Objects found unreferenced are freed by the count itself.
        Only for debugging, like the stdlib's.
        """
        return len(self._live_objects())

    def _debug_info(self) -> str:
        """One entry per live object: its id, reference count and type (the stdlib's format)."""
        lines = []
        for oid, typeid, count, pins in sorted(self._live_objects()):
            stored = f", {pins} stored in other shared objects" if pins else ""
            lines.append(f"  {oid}:       refcount={count}\n    {typeid} object{stored}")
        return "\n".join(lines)

    def join(self, timeout: float | None = None) -> None:
        """Wait until this manager is shut down (by any process), at most *timeout* seconds.

        Blocks in Redis.  Returns at once if it is not running.
        """
        if self._state.value != State.STARTED or self._session is None or self._session.closed:
            return
        if timeout is not None and timeout <= 0:
            return
        state = self._session.state
        mgr, closed = self._mgr_keys()
        if not state.exists(mgr):
            return
        state.blmove_rotate(closed, 0 if timeout is None else timeout)

    def __enter__(self) -> BaseManager:
        if self._state.value == State.INITIAL:
            self.start()
        if self._state.value != State.STARTED:
            raise ProcessError("Manager has shut down")
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.shutdown()

    @property
    def address(self) -> Any:
        """``'faasmp:<run id>/<manager id>'`` once started or connected (else as given)."""
        if self._session is None or self._mid is None:
            return self._address
        return _address(self._session.run_id, self._mid)

    def get_server(self) -> _Server:
        """An object whose ``serve_forever()`` starts this manager and blocks until it shuts down."""
        self._check_initial()
        return _Server(self)

    def __reduce__(self) -> Any:
        if self._state.value != State.STARTED:
            raise TypeError("a manager can be passed to another process only while it is started")
        return (_rebuild_manager, (type(self), self._ctx, self._mid))

    def __repr__(self) -> str:
        state = {State.INITIAL: "initial", State.STARTED: "started", State.SHUTDOWN: "shut down"}
        kind = f" {self._kind.value}" if self._kind is not None else ""
        return f"<{type(self).__name__} {state[self._state.value]}{kind} address={self.address!r}>"

    # -- objects -----------------------------------------------------------------------
    def _create(self, typeid: str, /, *args: Any, **kwds: Any) -> Any:
        """Create a shared object of *typeid*; returns its proxy (or the object itself)."""
        if self._state.value != State.STARTED:
            if self._state.value == State.SHUTDOWN:
                raise ProcessError("Manager has shut down")
            raise ProcessError("Manager has not been started: call start() or use it in a with statement")
        assert self._mid is not None
        return _make_object(type(self), self._ctx, self._mid, typeid, self, args, kwds)

    @classmethod
    def _registry_entry(cls, typeid: str) -> tuple[Any, Any, Any, Any]:
        try:
            return cls._registry[typeid]
        except KeyError:
            raise ValueError(
                f"unknown typeid {typeid!r} for {cls.__name__}; registered: {sorted(cls._registry)}"
            ) from None

    @classmethod
    def register(
        cls,
        typeid: str,
        callable: Callable[..., Any] | None = None,
        proxytype: Any = None,
        exposed: Iterable[str] | None = None,
        method_to_typeid: dict[str, str] | None = None,
        create_method: bool = True,
    ) -> None:
        """Register *typeid*: ``manager.<typeid>(*args)`` then creates a shared object.

        With the default ``proxytype`` (:class:`AutoProxy`), the object made
        by *callable* is pickled into Redis and its public methods (or
        *exposed*) become proxy methods run under the object's lock.  A
        :class:`BaseProxy` subclass gives a custom proxy; :class:`Direct`
        hands out faasmp shared objects as they are.
        """
        if not isinstance(typeid, str):
            raise TypeError(f"typeid must be a string, not {type(typeid).__name__}")
        if "_registry" not in cls.__dict__:
            cls._registry = cls._registry.copy()
        if proxytype is None:
            proxytype = AutoProxy
        proxytype = _adapt_proxytype(proxytype)
        if proxytype is not Direct and not (isinstance(proxytype, type) and issubclass(proxytype, BaseProxy)):
            raise TypeError(
                f"proxytype for {typeid!r} must be a faasmp.managers.BaseProxy subclass (or "
                f"Direct), not {proxytype!r}; stdlib proxy classes need a server process"
            )
        exposed = exposed or getattr(proxytype, "_exposed_", None)
        method_to_typeid = method_to_typeid or getattr(proxytype, "_method_to_typeid_", None)
        if method_to_typeid:
            for key, value in method_to_typeid.items():
                if type(key) is not str or type(value) is not str:
                    raise TypeError(f"method_to_typeid must map str to str, got {key!r}: {value!r}")
        cls._registry[typeid] = (
            callable,
            tuple(exposed) if exposed is not None else None,
            dict(method_to_typeid) if method_to_typeid else None,
            proxytype,
        )
        if create_method:

            def temp(self: BaseManager, /, *args: Any, **kwds: Any) -> Any:
                return self._create(typeid, *args, **kwds)

            temp.__name__ = temp.__qualname__ = typeid
            temp.__doc__ = (
                f"Create a shared {typeid!r} object and return it (a proxy unless shared directly)."
            )
            setattr(cls, typeid, temp)


def _parse_address(address: Any) -> tuple[str | None, str | None]:
    if address is None:
        return None, None
    if not isinstance(address, str) or not address:
        raise ValueError(
            f"faasmp managers have no server socket, so address {address!r} cannot be used: "
            "pass None, another manager's .address, or a name (a non-empty string)"
        )
    if address.startswith(_ADDRESS_PREFIX):
        run_id, sep, mid = address[len(_ADDRESS_PREFIX) :].partition("/")
        if not sep or not run_id or not mid:
            raise ValueError(
                f"malformed manager address {address!r}; expected 'faasmp:<run id>/<manager id>'"
            )
        return run_id, mid
    return None, address


def _rebuild_manager(cls: type[BaseManager], ctx: Any, mid: str) -> BaseManager:
    m = cls.__new__(cls)
    BaseManager.__init__(m, None, None, "pickle", ctx)
    m._mid = mid
    session = m._attach()
    m._address = _address(session.run_id, mid)
    m._kind = _Kind.CONNECTED
    m._state.value = State.STARTED
    return m


class _Server:
    """What :meth:`BaseManager.get_server` returns."""

    def __init__(self, manager: BaseManager) -> None:
        self._manager = manager

    @property
    def address(self) -> Any:
        return self._manager.address

    def serve_forever(self) -> None:
        """Start the manager and block until it is shut down (Ctrl-C shuts it down)."""
        if self._manager._state.value == State.INITIAL:
            self._manager.start()
        try:
            self._manager.join()
        except KeyboardInterrupt:
            pass
        finally:
            self._manager.shutdown()


# -- SyncManager ------------------------------------------------------------------------


def _lock(*, ctx: Any) -> Any:
    return ctx.Lock()


def _rlock(*, ctx: Any) -> Any:
    return ctx.RLock()


def _semaphore(value: int = 1, *, ctx: Any) -> Any:
    return ctx.Semaphore(value)


def _bounded_semaphore(value: int = 1, *, ctx: Any) -> Any:
    return ctx.BoundedSemaphore(value)


def _condition(lock: Any = None, *, ctx: Any) -> Any:
    return ctx.Condition(lock)


class EventProxy(Event_):
    """What ``manager.Event()`` returns: a faasmp :class:`~faasmp.synchronize.Event`.

    It is the Redis-backed event itself (no server in between); only its
    ``repr`` names it like the stdlib's proxy.
    """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} object, typeid 'Event' at {id(self):#x}>"


def _event(*, ctx: Any) -> Any:
    return EventProxy(ctx=ctx)


def _barrier(
    parties: int, action: Callable[[], Any] | None = None, timeout: float | None = None, *, ctx: Any
) -> Any:
    return ctx.Barrier(parties, action, timeout)


def _queue(maxsize: int = 0, *, ctx: Any) -> Any:
    return ctx.Queue(maxsize)


def _joinable_queue(maxsize: int = 0, *, ctx: Any) -> Any:
    return ctx.JoinableQueue(maxsize)


def _array(typecode: Any, sequence: Any, lock: Any = True, *, ctx: Any) -> Any:
    return ctx.Array(typecode, sequence, lock=lock)


def _pool(
    processes: int | None = None,
    initializer: Callable[..., Any] | None = None,
    initargs: Iterable[Any] = (),
    maxtasksperchild: int | None = None,
    *,
    ctx: Any,
) -> Any:
    return ctx.Pool(processes, initializer, initargs, maxtasksperchild)


class SyncManager(BaseManager):
    """The manager behind ``faasmp.Manager()``: dict, list, Namespace, Value and sync objects.

    ``dict``/``list``/``Namespace``/``Value`` give proxies to Redis state;
    ``Lock``, ``RLock``, ``Semaphore``, ``BoundedSemaphore``, ``Condition``,
    ``Event``, ``Barrier``, ``Queue``, ``JoinableQueue``, ``Array`` and
    ``Pool`` return the context's own objects (shareable already; a Pool
    cannot be passed to other processes).
    """


SyncManager.register("Queue", _queue, Direct)
SyncManager.register("JoinableQueue", _joinable_queue, Direct)
SyncManager.register("Event", _event, Direct)
SyncManager.register("Lock", _lock, Direct)
SyncManager.register("RLock", _rlock, Direct)
SyncManager.register("Semaphore", _semaphore, Direct)
SyncManager.register("BoundedSemaphore", _bounded_semaphore, Direct)
SyncManager.register("Condition", _condition, Direct)
SyncManager.register("Barrier", _barrier, Direct)
SyncManager.register("Pool", _pool, Direct)
SyncManager.register("list", list, ListProxy)
SyncManager.register("dict", dict, DictProxy)
SyncManager.register("Value", Value, ValueProxy)
SyncManager.register("Array", _array, Direct)
SyncManager.register("Namespace", Namespace, NamespaceProxy)


class SharedMemoryManager(BaseManager):
    """A manager of :mod:`faasmp.shared_memory` blocks, as the stdlib's ``SharedMemoryManager``.

    ``SharedMemory(size)`` and ``ShareableList(sequence)`` create blocks in
    the manager's run; ``shutdown()`` (or leaving the ``with`` block) unlinks
    every block this manager object created.  Differences from the stdlib:
    there is no server process, and blocks created through a copy of the
    manager passed to another process are tracked by that copy, not by the
    original.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._segments: list[Any] = []  # SharedMemory objects to unlink at shutdown

    def _check_started(self) -> None:
        if self._state.value != State.STARTED:
            # ValueError, as the stdlib's (its client finds no address).
            raise ValueError(f"{type(self).__name__} is not started: call start() or use it in a with block")

    def SharedMemory(self, size: int) -> Any:
        """A new :class:`faasmp.shared_memory.SharedMemory` of *size* bytes, unlinked at shutdown."""
        from .shared_memory import SharedMemory  # noqa: PLC0415 - shared_memory imports the managers' modules

        self._check_started()
        shm = SharedMemory(None, create=True, size=size, ctx=self._ctx)
        self._segments.append(shm)
        return shm

    def ShareableList(self, sequence: Iterable[Any] | None) -> Any:
        """A new :class:`faasmp.shared_memory.ShareableList` of *sequence*, unlinked at shutdown."""
        from .shared_memory import ShareableList  # noqa: PLC0415

        self._check_started()
        if self._ctx is not _default_ctx():
            raise ValueError("ShareableList lives in the default context (as the stdlib's, it takes no ctx)")
        sl = ShareableList(sequence)
        self._segments.append(sl.shm)
        return sl

    def shutdown(self) -> None:
        """Unlink every block this manager created, then shut the manager down."""
        segments, self._segments = self._segments, []
        for shm in segments:
            with contextlib.suppress(FileNotFoundError):  # unlinked by the program already
                shm.unlink()
        super().shutdown()
