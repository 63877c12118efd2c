"""``faasmp.synchronize``: locks, semaphores, conditions, events and barriers in Redis.

The same names, signatures and exceptions as :mod:`multiprocessing.synchronize`;
every object lives in Redis, so it works from every process of a run (the
client, :class:`~faasmp.context.FaasContext.Process` children, pool workers) and
pickles to them as a reference to the same keys.

Design (DESIGN.md §1), and why:

* **Lock, RLock, Semaphore, BoundedSemaphore** are a hash holding the count
  (and, for locks, the owner) plus a *wake list*.  Acquiring is one Lua script
  that decrements the count if it is positive (and records the owner) — one
  round trip when the lock is free; when it is not, the same script registers
  the caller as a waiter and the caller blocks in ``BLPOP`` on the wake list,
  with the acquire timeout as the BLPOP timeout.  Releasing is one Lua script
  that checks the release is legal and then, if waiters are registered, hands
  the unit over by pushing a token to the wake list (the count stays 0), else
  increments the count.  Memory is constant whatever the value (the stdlib
  Queue makes a ``BoundedSemaphore(2**31 - 1)``).  Redis hands a pushed token
  straight to the longest-waiting ``BLPOP`` client, so waiters are served
  first come, first served, nobody polls, and a wake-up cannot be lost: the
  token *is* the wake-up.  A waiter that times out or is interrupted
  unregisters atomically (taking a token that arrived meanwhile, or giving it
  back when interrupted); a token nobody was blocked for (a waiter that died)
  is taken by the next acquirer.  Locks record their owner (owner id, process
  name, recursion count); the owner id is a random token per process (renewed
  in a forked child) plus the thread id, so processes on other machines never
  share ids.  After a blocking ``BLPOP`` the owner is recorded in a second
  round trip; until then the lock reads as held by ``SomeOtherProcess``.
* **Condition** keeps a LIST of waiter ids; each waiter blocks in ``BLPOP`` on
  its own wake list.  ``wait`` registers the waiter *and* releases the lock in
  one Lua script, so a ``notify`` (which must hold the lock) can never slip in
  between and be lost.  A waiter that times out removes itself atomically;
  if a notify took it first, it reports having been notified, as the stdlib.
* **Event** is a flag list holding one element while set.  ``wait`` blocks in
  ``BLMOVE flag flag`` (a non-destructive blocking read), so one ``set`` wakes
  every waiter at once and no waiter list is needed.
* **Barrier** keeps its count and broken flag in a hash and the waiters of the
  current generation in a LIST; arriving is one Lua script.  The last arrival
  takes the generation's waiter list atomically (so the next generation can
  start filling at once), runs ``action`` and then wakes its waiters with the
  outcome.  A waiter that times out breaks the barrier, as the stdlib does.

How it differs from the stdlib:

* Every state change refreshes a TTL of ``key_ttl`` (default 1 h) on the
  object's keys, a safety net for a killed client; the owner deletes the keys
  when its object is garbage collected.  Using an object whose keys are gone
  raises :class:`RuntimeError` saying so (rather than blocking forever).
* A lock held by a process that dies stays locked, as with the stdlib.  A
  process killed while *blocked* in ``acquire`` leaves nothing behind.
* ``repr`` of a lock held by another process shows that process' name (the
  stdlib can only say ``SomeOtherProcess``).
* ``Condition`` accepts a faasmp :class:`Lock` or :class:`RLock` only.  A
  process killed while waiting stays registered until a ``notify`` takes it
  (that notify then wakes one live waiter fewer), as with the stdlib's
  semaphore-based Condition.
* A Barrier waiter that times out just after the last party arrived waits for
  the action to finish and returns normally (as the stdlib); if that last
  party dies inside the action, the waiters are never released.
* A waiter killed while blocked stays registered; the unit a release hands
  to it is taken by the next acquirer (nothing is lost, that acquirer just
  pays one more step).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from .runtime import dsm
from .runtime.shared import SharedObject

if TYPE_CHECKING:
    from .backends.state import ScriptCall
    from .context import FaasContext

__all__ = ["Barrier", "BoundedSemaphore", "Condition", "Event", "Lock", "RLock", "Semaphore"]

#: Largest semaphore value (the stdlib's on Linux).
SEM_VALUE_MAX = 2**31 - 1

# --- who is calling ------------------------------------------------------------


class _Identity:
    """A random token per process, renewed in a forked child (see module doc)."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(8)

    def renew(self) -> None:
        self.token = secrets.token_hex(8)

    def current(self) -> str:
        """The owner id of the calling (process, thread)."""
        return f"{self.token}:{threading.get_ident()}"


_IDENTITY = _Identity()
os.register_at_fork(after_in_child=_IDENTITY.renew)


def _owner_name() -> str:
    """``process`` or ``process|thread``, as the stdlib's lock reprs show owners."""
    from .process import current_process  # noqa: PLC0415 - process imports the context

    name = current_process().name
    thread = threading.current_thread().name
    return name if thread == "MainThread" else f"{name}|{thread}"


def _block_seconds(timeout: float | None) -> float:
    """A Redis blocking timeout: 0 waits forever, so positive values are at least 1 ms.

    (Redis rounds a timeout to whole milliseconds; 0.0001 s would become 0 =
    forever.)  Callers handle ``timeout <= 0`` (do not block) themselves.
    """
    return 0.0 if timeout is None else max(timeout, 0.001)


# --- Lua scripts (each one atomic step) -----------------------------------------


def _hand_over(meta: str, wake: str, ttl: str) -> str:
    """Lua releasing one unit of a semaphore: hand it to a registered waiter, or count it."""
    return f"""
if tonumber(redis.call('HGET', {meta}, 'w') or '0') > 0 then
  redis.call('HINCRBY', {meta}, 'w', -1)
  redis.call('RPUSH', {wake}, 1)
  redis.call('PEXPIRE', {wake}, {ttl})
else
  redis.call('HINCRBY', {meta}, 'v', 1)
end
"""


_SCRIPTS: dict[str, str] = {
    # A semaphore is one hash: 'v' the count, 'w' the registered blocked waiters
    # not yet served, 'max' (-1 unbounded), and for locks the owner ('id',
    # 'name', recursion 'count').  A release with waiters hands its unit over
    # by pushing a token to the wake list (the count stays 0); without waiters
    # it increments the count.  A token no blocked client took at once (its
    # waiter is between registering and BLPOP, timed out, or died) may be taken
    # by the next acquirer, which then counts that waiter as unserved again.
    # KEYS: meta, wake.  ARGV: me, name, ttl, recursive, track owner, count, register
    # -> 1 acquired, 0 not (registered as a waiter if ARGV[7] = '1'), -1 gone
    "sem_try": """
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
if ARGV[4] == '1' and redis.call('HGET', KEYS[1], 'id') == ARGV[1] then
  redis.call('HINCRBY', KEYS[1], 'count', 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
if tonumber(v) > 0 then
  redis.call('HINCRBY', KEYS[1], 'v', -1)
elseif redis.call('LPOP', KEYS[2]) then
  redis.call('HINCRBY', KEYS[1], 'w', 1)
else
  if ARGV[7] == '1' then
    redis.call('HINCRBY', KEYS[1], 'w', 1)
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
  end
  return 0
end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'count', ARGV[6])
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
""",
    # After a blocking BLPOP got the token.  KEYS: meta.  ARGV: me, name, ttl, count
    "sem_owned": """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'count', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
""",
    # A registered waiter stops waiting (timeout, interrupt).  KEYS: meta, wake
    # -> 1 a token was there (the caller holds a unit after all), 0 unregistered
    "sem_cancel": """
if redis.call('LPOP', KEYS[2]) then return 1 end
if tonumber(redis.call('HGET', KEYS[1], 'w') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'w', -1)
end
return 0
""",
    # Give back a unit (an interrupted waiter got one).  KEYS: meta, wake.  ARGV: ttl
    "sem_return": _hand_over("KEYS[1]", "KEYS[2]", "ARGV[1]"),
    # KEYS: meta, wake.  ARGV: me, ttl, recursive
    # -> remaining recursion count (0 = released), -1 gone, -2 not owner, -3 over-release
    "sem_release": """
local v = redis.call('HGET', KEYS[1], 'v')
if not v then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] == '1' then
  if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return -2 end
  local left = redis.call('HINCRBY', KEYS[1], 'count', -1)
  if left > 0 then return left end
else
  local maxv = tonumber(redis.call('HGET', KEYS[1], 'max'))
  if maxv >= 0 and tonumber(v) + redis.call('LLEN', KEYS[2]) >= maxv then return -3 end
end
redis.call('HDEL', KEYS[1], 'id', 'name', 'count')
"""
    + _hand_over("KEYS[1]", "KEYS[2]", "ARGV[2]")
    + """
return 0
""",
    # Register a waiter and release the lock completely, atomically.
    # KEYS: cond meta, cond queue, lock meta, lock wake list.  ARGV: me, wid, ttl
    # -> the lock's recursion count, -1 gone, -2 lock not owned
    "cond_wait": """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
if redis.call('HGET', KEYS[3], 'id') ~= ARGV[1] then return -2 end
local count = tonumber(redis.call('HGET', KEYS[3], 'count'))
redis.call('HDEL', KEYS[3], 'id', 'name', 'count')
"""
    + _hand_over("KEYS[3]", "KEYS[4]", "ARGV[3]")
    + """
redis.call('RPUSH', KEYS[2], ARGV[2])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
return count
""",
    # A waiter that timed out.  KEYS: queue, wake.  ARGV: wid -> 1 if notified meanwhile
    "cond_cancel": """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
return 1
""",
    # KEYS: cond meta, cond queue, lock meta.  ARGV: me, n (-1 = all), ttl, wake prefix
    "cond_notify": """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[3], 'id') ~= ARGV[1] then return -2 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local n = tonumber(ARGV[2])
local woken = 0
while n < 0 or woken < n do
  local wid = redis.call('LPOP', KEYS[2])
  if not wid then break end
  local k = ARGV[4] .. wid
  redis.call('RPUSH', k, 1)
  redis.call('PEXPIRE', k, ARGV[3])
  woken = woken + 1
end
return woken
""",
    # KEYS: meta, flag.  ARGV: ttl, op ('set' | 'clear' | 'get') -> flag after op, -1 gone
    "event": """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if ARGV[2] == 'set' then
  if redis.call('LLEN', KEYS[2]) == 0 then redis.call('RPUSH', KEYS[2], 1) end
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
  return 1
elseif ARGV[2] == 'clear' then
  redis.call('DEL', KEYS[2])
  return 0
end
if redis.call('LLEN', KEYS[2]) > 0 then return 1 end
return 0
""",
    # KEYS: meta, queue.  ARGV: wid, ttl
    # -> {-2} gone, {-1} broken, {index, 0} wait, {index, 1, wids of the generation...} last
    "barrier_arrive": """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('HGET', KEYS[1], 'broken') == '1' then return {-1} end
local idx = redis.call('HINCRBY', KEYS[1], 'count', 1) - 1
if idx + 1 < tonumber(redis.call('HGET', KEYS[1], 'parties')) then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {idx, 0}
end
local out = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'count', 0)
table.insert(out, 1, 1)
table.insert(out, 1, idx)
return out
""",
    # Wake waiters with an outcome.  ARGV: ttl, outcome, wake prefix, wids...
    "barrier_wake": """
for i = 4, #ARGV do
  local k = ARGV[3] .. ARGV[i]
  redis.call('RPUSH', k, ARGV[2])
  redis.call('PEXPIRE', k, ARGV[1])
end
return #ARGV - 3
""",
    # Break (op 'break': also when a waiter with id ARGV[3] is still queued, if given)
    # or reset (op 'reset').  KEYS: meta, queue.  ARGV: ttl, wake prefix, wid or '', op, extra wids...
    # -> 1 done, 0 the waiter was no longer queued, -1 gone
    "barrier_break": """
if ARGV[3] ~= '' and redis.call('LREM', KEYS[2], 1, ARGV[3]) == 0 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local broken = 1
if ARGV[4] == 'reset' then broken = 0 end
redis.call('HSET', KEYS[1], 'broken', broken, 'count', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local ws = redis.call('LRANGE', KEYS[2], 0, -1)
for i = 5, #ARGV do table.insert(ws, ARGV[i]) end
redis.call('DEL', KEYS[2])
for _, w in ipairs(ws) do
  local k = ARGV[2] .. w
  redis.call('RPUSH', k, 'broken')
  redis.call('PEXPIRE', k, ARGV[1])
end
return 1
""",
}


class _Synchronizer(SharedObject):
    """Shared plumbing: cached key names and Lua scripts."""

    _kind = "sync"

    def _k(self) -> tuple[str, ...]:
        """Key names (in ``_key_suffixes`` order) followed by the wake-key prefix."""
        cached: tuple[str, ...] | None = self.__dict__.get("_key_cache")
        if cached is None:
            cached = (*(self.key(s) for s in self._key_suffixes), self.key("w") + ":")
            self.__dict__["_key_cache"] = cached
        return cached

    @property
    def _ttl(self) -> int:
        ttl: int | None = self.__dict__.get("_ttl_cache")
        if ttl is None:
            ttl = self.__dict__["_ttl_cache"] = self._ttl_ms
        return ttl

    def _script(self, name: str) -> ScriptCall:
        return self._cached_script(name, _SCRIPTS[name])

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._script(name)(keys=keys, args=args)

    def _gone(self) -> RuntimeError:
        return RuntimeError(
            f"faasmp {type(self).__name__} {self._oid}: its state in Redis is gone — the object was "
            "released by the process that created it (garbage collected or the run shut down), "
            f"or it was unused for longer than key_ttl ({self._ttl / 1000:g} s)"
        )


# --- locks and semaphores -----------------------------------------------------


class SemLock(_Synchronizer):
    """A counting semaphore: a count in a hash plus a wake list (base of the locks and semaphores)."""

    _kind = "sem"
    _key_suffixes = ("m", "t")
    #: An owner may acquire again (RLock).
    _recursive: ClassVar[bool] = False
    #: Record who holds it (locks; needed by Condition and repr).
    _track_owner: ClassVar[bool] = False

    def __init__(self, value: int, maxvalue: int, *, ctx: FaasContext | None = None) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{type(self).__name__} value must be an int, not {type(value).__name__}")
        if value < 0 or value > SEM_VALUE_MAX:
            raise ValueError(f"semaphore initial value must be >= 0 and <= {SEM_VALUE_MAX}, got {value}")
        self._init_shared(ctx)
        self._maxvalue = maxvalue
        meta = self._k()[0]
        pipe = self._session.state.pipeline(transaction=True)
        pipe.hset(meta, {"kind": type(self).__name__, "max": maxvalue, "v": value, "w": 0})
        pipe.pexpire(meta, self._ttl)
        pipe.execute()

    def _getstate_extra(self) -> dict[str, Any]:
        return {"_maxvalue": self._maxvalue}

    # -- acquire / release --------------------------------------------------------
    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Acquire, blocking (in Redis) up to *timeout* seconds if *block*; as the stdlib.

        Returns ``True`` when acquired, ``False`` when non-blocking and taken, or
        when *timeout* passed.
        """
        got = self._acquire(block, timeout, 1)
        if got:
            dsm.acquire()  # acquiring a lock is an acquire of shared memory
        return got

    def _acquire(self, block: bool, timeout: float | None, count: int) -> bool:
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        meta, wake, _ = self._k()
        me = _IDENTITY.current()
        name = _owner_name() if self._track_owner else ""
        register = block and (timeout is None or timeout > 0)
        got = self._run(
            "sem_try",
            [meta, wake],
            [me, name, self._ttl, int(self._recursive), int(self._track_owner), count, int(register)],
        )
        if got == 1:
            return True
        if got == -1:
            raise self._gone()
        if not register:
            return False
        # Registered as a waiter: a release now hands its unit to us via the wake list.
        try:
            left = None if deadline is None else deadline - time.monotonic()
            woken = (left is None or left > 0) and (
                self._session.state.blpop([wake], _block_seconds(left)) is not None
            )
            if not woken:
                woken = self._run("sem_cancel", [meta, wake], []) == 1
        except BaseException:
            # Interrupted (Ctrl-C): stop waiting; a unit handed over meanwhile goes back.
            if self._run("sem_cancel", [meta, wake], []) == 1:
                self._run("sem_return", [meta, wake], [self._ttl])
            raise
        if not woken:
            return False
        if self._track_owner:
            if self._run("sem_owned", [meta], [me, name, self._ttl, count]) == -1:
                raise self._gone()
        return True

    def release(self) -> None:
        """Release; over-releasing a Lock or BoundedSemaphore raises ValueError, as the stdlib."""
        dsm.release()  # releasing a lock is a release of shared memory
        self._release_checked()

    def _release_checked(self) -> int:
        meta, wake, _ = self._k()
        left: int = self._run(
            "sem_release", [meta, wake], [_IDENTITY.current(), self._ttl, int(self._recursive)]
        )
        if left == -1:
            raise self._gone()
        if left == -2:
            raise AssertionError("attempt to release recursive lock not owned by thread")
        if left == -3:
            raise ValueError("semaphore or lock released too many times")
        return left

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- introspection ------------------------------------------------------------
    def _snapshot(self) -> tuple[bool, int, dict[bytes, bytes]]:
        """(exists, units available, meta hash with the owner) in one round trip.

        Available units are the count plus handed-over units no waiter has taken yet.
        """
        meta, wake, _ = self._k()
        pipe = self._session.state.pipeline()
        pipe.hgetall(meta)
        pipe.llen(wake)
        own, pending = pipe.execute()
        return bool(own), int(own.get(b"v", 0)) + int(pending), own

    def get_value(self) -> int:
        """The semaphore's value now (a snapshot, as the stdlib's)."""
        exists, value, _ = self._snapshot()
        if not exists:
            raise self._gone()
        return value

    def _owner_and_count(self) -> tuple[str, int | str]:
        """The stdlib's (owner name, count) for reprs."""
        exists, value, own = self._snapshot()
        if not exists:
            return "gone", "unknown"
        if own.get(b"id", b"").decode() == _IDENTITY.current():
            return _owner_name(), int(own.get(b"count", 1))
        if value >= 1:
            return "None", 0
        if b"name" in own:
            return own[b"name"].decode(), "nonzero"
        return "SomeOtherProcess", "nonzero"


class Semaphore(SemLock):
    """A counting semaphore shared by every process of the run."""

    _kind = "sem"

    def __init__(self, value: int = 1, *, ctx: FaasContext | None = None) -> None:
        super().__init__(value, -1, ctx=ctx)

    def __repr__(self) -> str:
        try:
            value: int | str = self.get_value()
        except Exception:  # noqa: BLE001 - repr never fails, as the stdlib's
            value = "unknown"
        return f"<{type(self).__name__}(value={value})>"


class BoundedSemaphore(Semaphore):
    """A semaphore that refuses to be released above its initial value (ValueError)."""

    def __init__(self, value: int = 1, *, ctx: FaasContext | None = None) -> None:
        SemLock.__init__(self, value, value, ctx=ctx)

    def __repr__(self) -> str:
        try:
            value: int | str = self.get_value()
        except Exception:  # noqa: BLE001 - repr never fails
            value = "unknown"
        return f"<{type(self).__name__}(value={value}, maxvalue={self._maxvalue})>"


class Lock(SemLock):
    """A non-recursive lock; any process may release it (as the stdlib's)."""

    _kind = "lock"
    _track_owner = True

    def __init__(self, *, ctx: FaasContext | None = None) -> None:
        super().__init__(1, 1, ctx=ctx)

    def __repr__(self) -> str:
        try:
            name, _ = self._owner_and_count()
        except Exception:  # noqa: BLE001 - repr never fails
            name = "unknown"
        return f"<{type(self).__name__}(owner={name})>"


class RLock(SemLock):
    """A recursive lock: the owning (process, thread) may acquire it again.

    Only the owner may release it (``AssertionError`` otherwise, as the stdlib).
    The recursion count lives in Redis with the owner.
    """

    _kind = "rlock"
    _recursive = True
    _track_owner = True

    def __init__(self, *, ctx: FaasContext | None = None) -> None:
        super().__init__(1, 1, ctx=ctx)

    def __repr__(self) -> str:
        try:
            name, count = self._owner_and_count()
        except Exception:  # noqa: BLE001 - repr never fails
            name, count = "unknown", "unknown"
        return f"<{type(self).__name__}({name}, {count})>"


# --- condition ------------------------------------------------------------------


class _Gauge:
    """A read-only count with a semaphore's ``get_value()``.

    The stdlib's Condition is built from semaphores (``_sleeping_count``,
    ``_woken_count``, ``_wait_semaphore``) that tests and debugging code read;
    faasmp's Condition offers the same names as views of its Redis state.
    """

    def __init__(self, read: Callable[[], int]) -> None:
        self._read = read

    def get_value(self) -> int:
        return self._read()


class Condition(_Synchronizer):
    """A condition variable over a faasmp :class:`Lock` or :class:`RLock` (default: a new RLock).

    Like the stdlib's: ``wait``/``notify`` without holding the lock raise
    ``AssertionError``; ``wait`` returns ``False`` on timeout.
    """

    _kind = "cond"
    _key_suffixes = ("m", "q")

    def __init__(self, lock: Lock | RLock | None = None, *, ctx: FaasContext | None = None) -> None:
        if lock is not None and not isinstance(lock, (Lock, RLock)):
            raise TypeError(
                f"a faasmp Condition needs a faasmp Lock or RLock (ctx.Lock(), ctx.RLock()), got {lock!r}"
            )
        self._init_shared(ctx)
        self._lock: Lock | RLock = lock if lock is not None else RLock(ctx=self._ctx)
        meta = self._k()[0]
        pipe = self._session.state.pipeline(transaction=True)
        pipe.hset(meta, {"kind": "Condition"})
        pipe.pexpire(meta, self._ttl)
        pipe.execute()

    def _getstate_extra(self) -> dict[str, Any]:
        return {"_lock": self._lock}

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Acquire the underlying lock."""
        return self._lock.acquire(block, timeout)

    def release(self) -> None:
        """Release the underlying lock."""
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)

    def __repr__(self) -> str:
        try:
            waiters: int | str = int(self._session.state.llen(self._k()[1]))
        except Exception:  # noqa: BLE001 - repr never fails
            waiters = "unknown"
        return f"<{type(self).__name__}({self._lock}, {waiters})>"

    # -- CPython's private counters, for code that inspects them ----------------------
    @property
    def _sleeping_count(self) -> _Gauge:
        """Waiters not yet notified (CPython's sleeping count minus woken count)."""
        return _Gauge(lambda: int(self._session.state.llen(self._k()[1])))

    @property
    def _woken_count(self) -> _Gauge:
        """0: a notify removes the waiter from the sleeping count at once (see ``_sleeping_count``)."""
        return _Gauge(lambda: 0)

    @property
    def _wait_semaphore(self) -> _Gauge:
        """0: each notified waiter gets its own wake list, there is no shared semaphore to read."""
        return _Gauge(lambda: 0)

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, block until notified or *timeout* passes, re-acquire it.

        Returns ``False`` if *timeout* passed without a notification.
        """
        meta, queue, prefix = self._k()
        lmeta, lwake, _ = self._lock._k()
        wid = secrets.token_hex(8)
        wake = prefix + wid
        dsm.release()  # wait releases the lock
        count = self._run("cond_wait", [meta, queue, lmeta, lwake], [_IDENTITY.current(), wid, self._ttl])
        if count == -1:
            raise self._gone()
        if count == -2:
            raise AssertionError("must acquire() condition before using wait()")
        notified = False
        try:
            if timeout is None or timeout > 0:
                notified = self._session.state.blpop([wake], _block_seconds(timeout)) is not None
        finally:
            if not notified:
                notified = self._run("cond_cancel", [queue, wake], [wid]) == 1
            self._lock._acquire(True, None, int(count))
            dsm.acquire()
        return notified

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        """Wait until *predicate()* is true (or *timeout* passes); return its last value."""
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = None
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to *n* waiters (the caller must hold the lock)."""
        self._notify(n)

    def notify_all(self) -> None:
        """Wake every waiter (the caller must hold the lock)."""
        self._notify(-1)

    def _notify(self, n: int) -> int:
        dsm.release()  # a notify is a release of shared memory
        meta, queue, prefix = self._k()
        woken: int = self._run(
            "cond_notify", [meta, queue, self._lock._k()[0]], [_IDENTITY.current(), n, self._ttl, prefix]
        )
        if woken == -1:
            raise self._gone()
        if woken == -2:
            raise AssertionError("lock is not owned")
        return woken


# --- event ----------------------------------------------------------------------


class Event(_Synchronizer):
    """A flag any process can set, clear and wait for."""

    _kind = "event"
    _key_suffixes = ("m", "f")

    def __init__(self, *, ctx: FaasContext | None = None) -> None:
        self._init_shared(ctx)
        meta = self._k()[0]
        pipe = self._session.state.pipeline(transaction=True)
        pipe.hset(meta, {"kind": "Event"})
        pipe.pexpire(meta, self._ttl)
        pipe.execute()

    def _op(self, op: str) -> bool:
        meta, flag, _ = self._k()
        r = self._run("event", [meta, flag], [self._ttl, op])
        if r == -1:
            raise self._gone()
        return r == 1

    def is_set(self) -> bool:
        """Whether the flag is set."""
        is_set = self._op("get")
        if is_set:
            dsm.acquire()  # seeing the flag set is an acquire of shared memory
        return is_set

    def set(self) -> None:
        """Set the flag, waking every waiter."""
        dsm.release()  # set is a release of shared memory
        self._op("set")

    def clear(self) -> None:
        """Reset the flag."""
        self._op("clear")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or *timeout* passes; return whether it was set."""
        if self._op("get"):
            dsm.acquire()  # a wait that sees the flag set is an acquire of shared memory
            return True
        if timeout is not None and timeout <= 0:
            return False
        woken = self._session.state.blmove_rotate(self._k()[1], _block_seconds(timeout)) is not None
        if woken:
            dsm.acquire()
        return woken

    def __repr__(self) -> str:
        try:
            status = "set" if self.is_set() else "unset"
        except Exception:  # noqa: BLE001 - repr never fails
            status = "unknown"
        return f"<{type(self).__qualname__} at {id(self):#x} {status}>"


# --- barrier --------------------------------------------------------------------


class Barrier(_Synchronizer):
    """``threading.Barrier`` semantics for processes: wait returns the arrival index.

    *action* (picklable) runs in exactly one waiter, the last to arrive, before
    the others are released; if it raises, the barrier breaks.  A waiter that
    times out breaks the barrier (``threading.BrokenBarrierError`` everywhere).
    """

    _kind = "barrier"
    _key_suffixes = ("m", "q")

    def __init__(
        self,
        parties: int,
        action: Callable[[], Any] | None = None,
        timeout: float | None = None,
        *,
        ctx: FaasContext | None = None,
    ) -> None:
        if not isinstance(parties, int) or isinstance(parties, bool) or parties < 1:
            raise ValueError(f"parties must be an int >= 1, got {parties!r}")
        if action is not None and not callable(action):
            raise TypeError(f"Barrier action must be callable, got {action!r}")
        self._init_shared(ctx)
        self._parties = parties
        self._action = action
        self._timeout = timeout
        meta = self._k()[0]
        pipe = self._session.state.pipeline(transaction=True)
        pipe.hset(meta, {"kind": "Barrier", "parties": parties, "count": 0, "broken": 0})
        pipe.pexpire(meta, self._ttl)
        pipe.execute()

    def _getstate_extra(self) -> dict[str, Any]:
        return {"_parties": self._parties, "_action": self._action, "_timeout": self._timeout}

    def wait(self, timeout: float | None = None) -> int:
        """Wait for all parties; return this caller's arrival index (0 .. parties-1)."""
        dsm.release()  # a barrier is a release, then an acquire, of shared memory
        index = self._wait(timeout)
        dsm.acquire()
        return index

    def _wait(self, timeout: float | None) -> int:
        if timeout is None:
            timeout = self._timeout
        meta, queue, _ = self._k()
        wid = secrets.token_hex(8)
        reply = self._run("barrier_arrive", [meta, queue], [wid, self._ttl])
        index = int(reply[0])
        if index == -2:
            raise self._gone()
        if index == -1:
            raise threading.BrokenBarrierError
        if int(reply[1]) == 1:
            waiters = [w.decode() if isinstance(w, bytes) else str(w) for w in reply[2:]]
            self._release_generation(waiters)
            return index
        return self._await_release(index, wid, timeout)

    def _release_generation(self, waiters: list[str]) -> None:
        meta, queue, prefix = self._k()
        try:
            if self._action is not None:
                self._action()
        except BaseException:
            self._run("barrier_break", [meta, queue], [self._ttl, prefix, "", "break", *waiters])
            raise
        if waiters:
            self._run("barrier_wake", [meta], [self._ttl, "ok", prefix, *waiters])

    def _await_release(self, index: int, wid: str, timeout: float | None) -> int:
        meta, queue, prefix = self._k()
        wake = prefix + wid
        state = self._session.state
        got = None
        if timeout is None or timeout > 0:
            got = state.blpop([wake], _block_seconds(timeout))
        if got is None:
            if self._run("barrier_break", [meta, queue], [self._ttl, prefix, wid, "break"]) != 0:
                raise threading.BrokenBarrierError
            # The last party took this generation just now: its outcome follows
            # once the action has run (the stdlib waits for it as well).
            got = state.blpop([wake], 0)
        if got is None or got[1] != b"ok":
            raise threading.BrokenBarrierError
        return index

    def reset(self) -> None:
        """Return to the empty state; current waiters get ``BrokenBarrierError``."""
        meta, queue, prefix = self._k()
        if self._run("barrier_break", [meta, queue], [self._ttl, prefix, "", "reset"]) == -1:
            raise self._gone()

    def abort(self) -> None:
        """Break the barrier: current and future waiters get ``BrokenBarrierError``."""
        meta, queue, prefix = self._k()
        if self._run("barrier_break", [meta, queue], [self._ttl, prefix, "", "break"]) == -1:
            raise self._gone()

    def _fields(self) -> tuple[int, bool]:
        raw = self._session.state.hgetall(self._k()[0])
        if not raw:
            raise self._gone()
        return int(raw.get(b"count", 0)), raw.get(b"broken") == b"1"

    @property
    def parties(self) -> int:
        """The number of parties required to pass the barrier."""
        return self._parties

    @property
    def n_waiting(self) -> int:
        """The number of parties currently waiting."""
        count, broken = self._fields()
        return 0 if broken else count

    @property
    def broken(self) -> bool:
        """Whether the barrier is broken."""
        return self._fields()[1]

    def __repr__(self) -> str:
        cls = type(self)
        head = f"<{cls.__module__}.{cls.__qualname__} at {id(self):#x}:"
        try:
            count, broken = self._fields()
        except Exception:  # noqa: BLE001 - repr never fails
            return f"{head} unknown>"
        if broken:
            return f"{head} broken>"
        return f"{head} waiters={count}/{self.parties}>"
