"""``faasmp.synchronize``: locks, semaphores, conditions, events and barriers in Redis.

The same names, signatures and exceptions as :mod:`multiprocessing.synchronize`;
every object lives in Redis, so it works from every process of a run (the
client, :class:`~faasmp.context.FaasContext.Process` children, pool workers) and
pickles to them as a reference to the same keys.

Design (the mapping is in docs/architecture.md, "The idea"), and why:

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

from .backends.redis.events import RedisBarrier, RedisCondition, RedisEvent
from .backends.redis.semaphores import RedisSemaphore
from .runtime import dsm, metrics
from .runtime.shared import SharedObject

if TYPE_CHECKING:
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

# What this process's threads hold, as far as it can prove (see SemLock.release):
# a lock's object id -> (owner id, recursion count); a semaphore's object id ->
# {owner id: units taken and not yet given back}.  A release of something held
# here cannot fail (short of the state being lost), so its reply need not be
# waited for.  A forked child holds nothing of its own (new identity).
_HELD_LOCKS: dict[str, tuple[str, int]] = {}
_HELD_UNITS: dict[str, dict[str, int]] = {}


def _forget_held() -> None:
    _HELD_LOCKS.clear()
    _HELD_UNITS.clear()


os.register_at_fork(after_in_child=_forget_held)


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

    def _count(self, op: str, t0: float) -> None:
        """Count one *op* (acquire, wait) that began blocking at ``perf_counter()`` *t0* (see metrics)."""
        key = "_m_" + op
        c: metrics.Counter | None = self.__dict__.get(key)
        if c is None:
            c = self.__dict__[key] = metrics.counter(type(self).__name__.lower(), self._oid, op)
        c.since(t0)

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
        self._redis.create(type(self).__name__, value, maxvalue)

    @property
    def _redis(self) -> RedisSemaphore:
        """This semaphore's Redis state (made once per object, also in a copy)."""
        sem: RedisSemaphore | None = self.__dict__.get("_redis_cache")
        if sem is None:
            meta, wake, _ = self._k()
            sem = self.__dict__["_redis_cache"] = RedisSemaphore(self._session.state, meta, wake, self._ttl)
        return sem

    def _getstate_extra(self) -> dict[str, Any]:
        return {"_maxvalue": self._maxvalue}

    # -- acquire / release --------------------------------------------------------
    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        """Acquire, blocking (in Redis) up to *timeout* seconds if *block*; as the stdlib.

        Returns ``True`` when acquired, ``False`` when non-blocking and taken, or
        when *timeout* passed.
        """
        t0 = time.perf_counter()
        # Acquiring a lock is an acquire of shared memory: the pull rides
        # behind the lock's script in the same round trip.
        # (The state is the one this lock's commands use: looking it up through
        # the context could start a new run for a lock used after shutdown.)
        pull = dsm.acquire if dsm.active(self._redis._state) else None
        got = self._acquire(block, timeout, 1, pull=pull)
        self._count("acquire", t0)
        if got:
            dsm.acquire(self, pull=pull is None)
        return got

    def _acquire(
        self, block: bool, timeout: float | None, count: int, pull: Callable[[], object] | None = None
    ) -> bool:
        """Take *count* units (see :meth:`acquire`), noting them as this thread's (:meth:`_took`)."""
        me = _IDENTITY.current()
        if not self._take(me, block, timeout, count, pull):
            return False
        self._took(me, count)
        return True

    def _took(self, me: str, count: int) -> None:
        """Note that *me* now holds *count* more units (its releases may then be deferred)."""
        oid = self._oid
        if self._track_owner:
            held = _HELD_LOCKS.get(oid)
            before = held[1] if held is not None and held[0] == me else 0
            _HELD_LOCKS[oid] = (me, before + count)
        else:
            units = _HELD_UNITS.setdefault(oid, {})
            units[me] = units.get(me, 0) + count

    def _give_back(self, me: str) -> bool:
        """True (and one unit fewer noted) if *me* holds a unit of this object: its release is valid."""
        oid = self._oid
        if self._track_owner:
            held = _HELD_LOCKS.get(oid)
            if held is None or held[0] != me:
                return False
            if held[1] > 1:
                _HELD_LOCKS[oid] = (me, held[1] - 1)
            else:
                _HELD_LOCKS.pop(oid, None)  # another thread's release may have dropped it meanwhile
            return True
        units = _HELD_UNITS.get(oid)
        n = units.get(me, 0) if units is not None else 0
        if n <= 0 or units is None:
            return False
        if n > 1:
            units[me] = n - 1
        else:
            units.pop(me, None)
            if not units:
                _HELD_UNITS.pop(oid, None)
        return True

    def _forget(self) -> None:
        """Nothing of this object is noted as held here any more (a release by another thread)."""
        _HELD_LOCKS.pop(self._oid, None)
        _HELD_UNITS.pop(self._oid, None)

    def _take(
        self,
        me: str,
        block: bool,
        timeout: float | None,
        count: int,
        pull: Callable[[], object] | None = None,
    ) -> bool:
        """Take *count* units (see :meth:`acquire`); *pull* runs once the units are held.

        *pull* is sent right behind the first try, in its round trip (a pull
        that turns out to precede a wait is harmless: a pull is always
        allowed; it runs again after the wait).
        """
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        sem = self._redis
        name = _owner_name() if self._track_owner else ""
        register = block and (timeout is None or timeout > 0)
        rec, own = self._recursive, self._track_owner
        if pull is None:
            got = sem.sem_try(me, name, recursive=rec, track_owner=own, count=count, register=register)
        else:
            got = sem.sem_try_then(
                me, name, pull, recursive=rec, track_owner=own, count=count, register=register
            )
        if got == 1:
            return True
        if got == -1:
            raise self._gone()
        if not register:
            return False
        # Registered as a waiter: a release now hands its unit to us via the wake list.
        owned = False
        try:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                woken = False
            elif self._track_owner:
                # A lock records its new owner in the same round trip as the wait.
                status = sem.sem_wait_owned(me, name, count, _block_seconds(left))
                if status == -1:
                    raise self._gone()
                woken = owned = status == 1
            else:
                woken = sem.sem_wait(_block_seconds(left))
            if not woken:
                woken = sem.sem_cancel(me)
        except BaseException:
            # Interrupted (Ctrl-C): stop waiting; a unit handed over meanwhile goes back.
            if sem.sem_cancel(me):
                sem.sem_return()
            raise
        if not woken:
            return False
        if self._track_owner and not owned and not sem.sem_owned(me, name, count):
            raise self._gone()
        if pull is not None:
            pull()
        return True

    def release(self) -> None:
        """Release; over-releasing a Lock or BoundedSemaphore raises ValueError, as the stdlib.

        A release of a unit this thread acquired and still holds cannot fail
        (short of the object's state being lost): it is written without
        waiting for its reply, which the thread's next command reads in its
        own round trip, so an acquire+release cycle costs one round trip.
        Redis runs it at once (a waiter elsewhere is woken then).  Any other
        release waits for its reply, so the stdlib's errors come at the call.
        An error a deferred reply turns out to be (the state was lost, or
        another process released this Lock meanwhile) is raised by that next
        command, naming this release.
        """
        me = _IDENTITY.current()
        if self._give_back(me):
            # The pushes of shared memory are written first, in the same chunk:
            # Redis has them before it runs the release (docs/shared_memory.md).
            dsm.release(self, then=lambda: self._release_later(me), later=True)
            return
        # Releasing a lock is a release of shared memory: the pushes are sent
        # first and the lock's script collects their replies (one round trip).
        dsm.release(self, then=self._release_checked)

    def _release_later(self, me: str) -> None:
        def on_reply(left: int | BaseException) -> BaseException | None:
            if isinstance(left, BaseException):
                return left
            if left >= 0:
                return None
            error = self._release_error(left)
            where = (
                f"faasmp {type(self).__name__} {self._oid}: a release() whose reply was read "
                "with this thread's next command failed"
            )
            # The same type as a synchronous release would have raised.
            return type(error)(f"{where}: {error}")

        self._redis.sem_release_later(me, on_reply, recursive=self._recursive, track_owner=self._track_owner)

    def _release_checked(self) -> int:
        left = self._redis.sem_release(
            _IDENTITY.current(), recursive=self._recursive, track_owner=self._track_owner
        )
        if left < 0:
            raise self._release_error(left)
        if left == 0:
            # Released here by a thread that did not take it: whatever this
            # process noted as held may no longer be (a Lock may be released
            # by anyone; a bounded semaphore's room changed).
            self._forget()
        return left

    def _release_error(self, left: int) -> BaseException:
        """The stdlib's error for a refused release (*left* is SEM_RELEASE's negative result)."""
        if left == -1:
            return self._gone()
        if left == -2:
            return AssertionError("attempt to release recursive lock not owned by thread")
        return ValueError("semaphore or lock released too many times")

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- introspection ------------------------------------------------------------
    def _snapshot(self) -> tuple[bool, int, dict[bytes, bytes]]:
        """(exists, units available, meta hash with the owner) in one round trip."""
        return self._redis.snapshot()

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
        if own.get(b"name"):  # blank while a released unit is on its way to a waiter
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
        self._redis.create()

    @property
    def _redis(self) -> RedisCondition:
        """This condition's Redis state (made once per object, also in a copy)."""
        cond: RedisCondition | None = self.__dict__.get("_redis_cache")
        if cond is None:
            meta, queue, prefix = self._k()
            cond = RedisCondition(self._session.state, meta, queue, prefix, self._ttl)
            self.__dict__["_redis_cache"] = cond
        return cond

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
            waiters: int | str = self._redis.waiters()
        except Exception:  # noqa: BLE001 - repr never fails
            waiters = "unknown"
        return f"<{type(self).__name__}({self._lock}, {waiters})>"

    # -- CPython's private counters, for code that inspects them ----------------------
    @property
    def _sleeping_count(self) -> _Gauge:
        """Waiters not yet notified (CPython's sleeping count minus woken count)."""
        return _Gauge(lambda: self._redis.waiters())

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
        t0 = time.perf_counter()
        cond = self._redis
        lock = self._lock._redis
        wid = secrets.token_hex(8)
        dsm.release()  # wait releases the lock
        count = cond.cond_wait(lock.meta, lock.wake, _IDENTITY.current(), wid)
        if count > 0:
            self._lock._forget()  # released by the script; _acquire below notes it again
        if count == -1:
            raise self._gone()
        if count == -2:
            raise AssertionError("must acquire() condition before using wait()")
        notified = False
        try:
            if timeout is None or timeout > 0:
                notified = cond.cond_block(wid, _block_seconds(timeout))
        finally:
            if not notified:
                notified = cond.cond_cancel(wid)
            self._lock._acquire(True, None, int(count))
            dsm.acquire()
        self._count("wait", t0)
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
        woken = self._redis.cond_notify(self._lock._redis.meta, _IDENTITY.current(), n)
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
        self._redis.create()

    @property
    def _redis(self) -> RedisEvent:
        """This event's Redis state (made once per object, also in a copy)."""
        ev: RedisEvent | None = self.__dict__.get("_redis_cache")
        if ev is None:
            meta, flag, _ = self._k()
            ev = self.__dict__["_redis_cache"] = RedisEvent(self._session.state, meta, flag, self._ttl)
        return ev

    def _op(self, op: str) -> bool:
        r = self._redis.event_op(op)
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
        t0 = time.perf_counter()
        woken = self._wait(timeout)
        self._count("wait", t0)
        return woken

    def _wait(self, timeout: float | None) -> bool:
        if self._op("get"):
            dsm.acquire()  # a wait that sees the flag set is an acquire of shared memory
            return True
        if timeout is not None and timeout <= 0:
            return False
        woken = self._redis.event_wait(_block_seconds(timeout))
        if woken:
            dsm.acquire()
        return bool(woken)

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
        self._redis.create(parties)

    @property
    def _redis(self) -> RedisBarrier:
        """This barrier's Redis state (made once per object, also in a copy)."""
        bar: RedisBarrier | None = self.__dict__.get("_redis_cache")
        if bar is None:
            meta, queue, prefix = self._k()
            bar = RedisBarrier(self._session.state, meta, queue, prefix, self._ttl)
            self.__dict__["_redis_cache"] = bar
        return bar

    def _getstate_extra(self) -> dict[str, Any]:
        return {"_parties": self._parties, "_action": self._action, "_timeout": self._timeout}

    def wait(self, timeout: float | None = None) -> int:
        """Wait for all parties; return this caller's arrival index (0 .. parties-1)."""
        t0 = time.perf_counter()
        dsm.release()  # a barrier is a release, then an acquire, of shared memory
        index = self._wait(timeout)
        dsm.acquire()
        self._count("wait", t0)
        return index

    def _wait(self, timeout: float | None) -> int:
        if timeout is None:
            timeout = self._timeout
        wid = secrets.token_hex(8)
        # Without an action the last arrival releases the others in its own script.
        reply = self._redis.barrier_arrive(wid, wake=self._action is None)
        index = int(reply[0])
        if index == -2:
            raise self._gone()
        if index == -1:
            raise threading.BrokenBarrierError
        if int(reply[1]) == 2:
            return index
        if int(reply[1]) == 1:
            waiters = [w.decode() if isinstance(w, bytes) else str(w) for w in reply[2:]]
            self._release_generation(waiters)
            return index
        return self._await_release(index, wid, timeout)

    def _release_generation(self, waiters: list[str]) -> None:
        try:
            if self._action is not None:
                self._action()
        except BaseException:
            self._redis.barrier_break("break", extra=waiters)
            raise
        if waiters:
            self._redis.barrier_wake(waiters)

    def _await_release(self, index: int, wid: str, timeout: float | None) -> int:
        bar = self._redis
        got = None
        if timeout is None or timeout > 0:
            got = bar.barrier_block(wid, _block_seconds(timeout))
        if got is None:
            if bar.barrier_break("break", wid) != 0:
                raise threading.BrokenBarrierError
            # The last party took this generation just now: its outcome follows
            # once the action has run (the stdlib waits for it as well).
            got = bar.barrier_block(wid, 0)
        if got != b"ok":
            raise threading.BrokenBarrierError
        return index

    def reset(self) -> None:
        """Return to the empty state; current waiters get ``BrokenBarrierError``."""
        if self._redis.barrier_break("reset") == -1:
            raise self._gone()

    def abort(self) -> None:
        """Break the barrier: current and future waiters get ``BrokenBarrierError``."""
        if self._redis.barrier_break("break") == -1:
            raise self._gone()

    def _fields(self) -> tuple[int, bool]:
        raw = self._redis.barrier_fields()
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
