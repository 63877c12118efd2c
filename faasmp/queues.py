"""``faasmp.queues``: ``Queue``, ``SimpleQueue`` and ``JoinableQueue`` in Redis.

Each queue is a Redis list of signed cloudpickles shared by every process of
the run (pass the queue to a ``Process``/``Pool`` as with the stdlib).

Differences from :mod:`multiprocessing.queues`, all in the direction of
fewer surprises:

* **No feeder thread.**  ``put`` serializes the object and sends it to
  Redis before it returns, so an unpicklable object raises in ``put`` (the
  stdlib prints the error from its feeder thread and drops the item), and
  ``join_thread`` has nothing to wait for: after ``close()`` it returns at once.
  On an unbounded queue ``put`` does not wait for Redis' reply (it is
  collected with the thread's next command, which keeps program order), so
  a producer's puts overlap like the stdlib's buffered ones.
* ``qsize()`` works on every platform (it is ``LLEN``).
* ``maxsize`` is enforced atomically in Redis (a Lua script checks the length
  and pushes); a ``put`` on a full queue blocks in Redis on a list of
  "space freed" tokens that every ``get`` pushes — no polling.  Items over
  64 KiB on an unbounded queue skip Lua (it copies arguments, ~2 ms per MB);
  on a bounded queue they pay that price for the atomic check.
* ``SimpleQueue.get`` and ``JoinableQueue.join`` take an optional
  keyword-only *timeout* (every blocking call of faasmp does).

The queue's keys are deleted when the queue object that created it is
garbage collected (or the run ends), so keep it alive while processes use it.
"""

from __future__ import annotations

import operator
import pickle
import time
import types
import weakref
from collections.abc import Callable
from queue import Empty, Full
from typing import TYPE_CHECKING, Any, ClassVar

from .backends.state import StateError
from .connection import Signer
from .runtime import dsm, pickling
from .runtime.call import dumps_named, dumps_plain
from .runtime.shared import SharedObject

if TYPE_CHECKING:
    from .backends.state import StateBackend
    from .context import FaasContext

__all__ = ["JoinableQueue", "Queue", "SimpleQueue"]

#: Items above this many bytes are pushed without Lua where the queue allows
#: it (unbounded queues): a Lua call copies its arguments (~2 ms per MB).
_BIG = 1 << 16

try:  # the stdlib's bound for "unbounded" queues
    from _multiprocessing import SemLock as _SemLock

    SEM_VALUE_MAX: int = _SemLock.SEM_VALUE_MAX
except (ImportError, AttributeError):  # pragma: no cover - platforms without sem_open
    SEM_VALUE_MAX = 2**31 - 1

# Push if there is room.  KEYS: items, space tokens, unfinished count, "all done"
# flag list.  ARGV: blob, maxsize, ttl ms, joinable (0/1).  Returns 1, or 0 if full.
PUT = """
if redis.call('LLEN', KEYS[1]) >= tonumber(ARGV[2]) then
  -- Full now: every space token left announces room someone already took.
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if ARGV[4] == '1' then
  if redis.call('INCR', KEYS[3]) == 1 then redis.call('DEL', KEYS[4]) end
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return 1
"""

# Take the first item without blocking.  KEYS: items, space tokens.
# ARGV: bounded (0/1), maxsize, ttl ms.
GET_NOW = """
local v = redis.call('LPOP', KEYS[1])
if v and ARGV[1] == '1' then
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
return v
"""

# An item was taken by a blocking get: wake one blocked put.  KEYS: space tokens.
SPACE_FREED = """
redis.call('RPUSH', KEYS[1], '1')
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""

# KEYS: unfinished count, "all done" flag list.  ARGV: ttl ms.
# Returns the new count, or -1 if there was no unfinished task.
TASK_DONE = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n <= 0 then return -1 end
n = redis.call('DECR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if n == 0 then
  redis.call('DEL', KEYS[2])
  redis.call('RPUSH', KEYS[2], '1')
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return n
"""


def _check_maxsize(maxsize: Any) -> int:
    try:
        return operator.index(maxsize)
    except TypeError:
        raise TypeError(f"maxsize must be an integer, not {type(maxsize).__name__}") from None


def _redis_timeout(timeout: float) -> float:
    """A positive timeout for a blocking Redis command (0 would mean forever)."""
    return max(timeout, 0.001)


def _put_reply_handler(ref: weakref.ref[_ListQueue]) -> Callable[[Any], None]:
    """Records a failed deferred put on its queue (held weakly: GC still releases it)."""

    def on_reply(reply: Any) -> None:
        queue_ = ref()
        if queue_ is not None and isinstance(reply, Exception):
            queue_._lost = reply

    return on_reply


class _ListQueue(SharedObject):
    """What every queue shares: one list of signed pickles and its cached handles."""

    _state: StateBackend
    _authkey: bytes
    _ttl: int
    #: items, space tokens, unfinished count, "all done" flag (PUT's KEYS).
    _put_keys: list[str]

    def _setup(self) -> None:
        session = self._session
        self._state = session.state
        self._authkey = session.authkey
        self._signer = Signer(session.authkey)
        self._ttl = int(session.config.key_ttl * 1000)
        self._items = self.key("items")
        # The thread's own connection: the lowest-latency path (see StateBackend.direct).
        self._direct = self._state.direct
        self._put_deferred = self._direct.deferred_script(PUT)
        self._on_put_reply = _put_reply_handler(weakref.ref(self))
        self._lost: BaseException | None = None

    def _push_unbounded(self, blob: bytes, joinable: str) -> None:
        """Push onto an unbounded queue without waiting for Redis' reply.

        The command is written at once and runs in order with this thread's
        next commands; its reply (always "pushed") is collected with the next one.
        """
        self._check_lost()
        try:
            if len(blob) > _BIG:
                self._push_big(blob, joinable)
            else:
                self._put_deferred(
                    self._put_keys, [blob, SEM_VALUE_MAX, self._ttl, joinable], self._on_put_reply
                )
        except StateError:
            self._check_lost()  # the earlier put that was lost with the connection says more
            raise
        self._check_lost()

    def _push_big(self, blob: bytes, joinable: str) -> None:
        """PUT's steps for a large item on an unbounded queue, as plain commands in one trip."""
        items, ttl = self._items, self._ttl
        if joinable == "0":
            self._direct.execute_many([("RPUSH", items, blob), ("PEXPIRE", items, ttl)])
            return
        unfinished, done = self._put_keys[2], self._put_keys[3]
        # A transaction: a consumer must never see the item before it is counted.
        self._direct.execute_many(
            [
                ("MULTI",),
                ("RPUSH", items, blob),
                ("PEXPIRE", items, ttl),
                ("INCR", unfinished),
                ("PEXPIRE", unfinished, ttl),
                ("DEL", done),
                ("EXEC",),
            ]
        )

    def _check_lost(self) -> None:
        lost, self._lost = self._lost, None
        if lost is not None:
            raise StateError(f"an earlier item put on {self!r} was not stored: {lost}")

    def _dumps(self, obj: Any) -> bytes:
        plain = dumps_plain(obj, self._authkey)  # the C pickler for plain data
        if plain is not None:
            return plain
        try:
            return self._signer.sign(pickling.dumps(obj))
        except Exception:  # noqa: BLE001 - redo it to raise one clear error naming the queue
            return dumps_named(obj, self._authkey, f"an item put on {self!r}")

    def _size(self) -> int:
        return int(self._state.llen(self._items))

    def __repr__(self) -> str:
        return f"<faasmp.queues.{type(self).__name__} {self._oid}>"

    __class_getitem__: ClassVar[Any] = classmethod(types.GenericAlias)


class Queue(_ListQueue):
    """A process-shared FIFO queue, like :class:`multiprocessing.Queue`.

    ``maxsize <= 0`` means unbounded (as in the stdlib, the bound is then
    ``SEM_VALUE_MAX``).  See the module docstring for the differences.
    """

    _kind = "queue"
    _key_suffixes: ClassVar[tuple[str, ...]] = ("items", "space")

    def __init__(self, maxsize: int = 0, *, ctx: FaasContext | None = None) -> None:
        maxsize = _check_maxsize(maxsize)
        self._maxsize = maxsize if maxsize > 0 else SEM_VALUE_MAX
        self._init_shared(ctx)
        self._setup()

    def _setup(self) -> None:
        super()._setup()
        self._closed = False
        self._space = self.key("space")
        self._bounded = "1" if self._maxsize < SEM_VALUE_MAX else "0"
        self._put_script = self._direct.script(PUT)
        self._get_script = self._direct.script(GET_NOW)
        self._freed_script = self._direct.script(SPACE_FREED)
        self._put_keys = [self._items, self._space, self.key("unfinished"), self.key("done")]
        self._joinable = "0"

    def _getstate_extra(self) -> dict[str, Any]:
        return {"_maxsize": self._maxsize}

    def _setstate_extra(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._setup()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")

    # -- put ----------------------------------------------------------------
    def put(self, obj: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put *obj* on the queue, waiting up to *timeout* seconds for room (``queue.Full``).

        The object is pickled and sent to Redis before ``put`` returns (on an
        unbounded queue without waiting for the reply; see ``_push_unbounded``).
        """
        self._check_open()
        dsm.release()  # a put is a release of shared memory
        blob = self._dumps(obj)
        if self._bounded == "0":
            self._push_unbounded(blob, self._joinable)
            return
        args = [blob, self._maxsize, self._ttl, self._joinable]
        if self._put_script(keys=self._put_keys, args=args):
            return
        if not block or (timeout is not None and timeout <= 0):
            raise Full
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                self._direct.blpop([self._space], 0)
            else:
                left = deadline - time.monotonic()
                if left <= 0 or self._direct.blpop([self._space], _redis_timeout(left)) is None:
                    # One last try: room may have been made just as we gave up.
                    if self._put_script(keys=self._put_keys, args=args):
                        return
                    raise Full
            if self._put_script(keys=self._put_keys, args=args):
                return

    def put_nowait(self, obj: Any) -> None:
        """``put(obj, False)``."""
        self.put(obj, False)

    # -- get ----------------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item, waiting up to *timeout* seconds (``queue.Empty``)."""
        self._check_open()
        if not block or (timeout is not None and timeout <= 0):
            blob = self._get_script(
                keys=[self._items, self._space], args=[self._bounded, self._maxsize, self._ttl]
            )
            if blob is None:
                raise Empty
        else:
            item = self._direct.blpop([self._items], 0 if timeout is None else _redis_timeout(timeout))
            if item is None:
                raise Empty
            blob = item[1]
            if self._bounded == "1":
                self._freed_script(keys=[self._space], args=[self._maxsize, self._ttl])
        dsm.acquire()  # a get is an acquire of shared memory
        return pickle.loads(self._signer.verify(blob))

    def get_nowait(self) -> Any:
        """``get(False)``."""
        return self.get(False)

    # -- size ---------------------------------------------------------------
    def qsize(self) -> int:
        """Number of items in the queue (exact at the moment Redis answers)."""
        return self._size()

    def empty(self) -> bool:
        return self._size() == 0

    def full(self) -> bool:
        return self._size() >= self._maxsize

    # -- lifecycle ----------------------------------------------------------
    def close(self) -> None:
        """This process will put no more data (later ``put``/``get`` here raise ValueError).

        Other processes' copies stay usable; the data stays in Redis.
        """
        self._closed = True

    def join_thread(self) -> None:
        """Returns at once after :meth:`close`: puts are synchronous, there is no feeder thread."""
        assert self._closed, f"Queue {self!r} not closed"

    def cancel_join_thread(self) -> None:
        """Accepted for compatibility: nothing is ever left in a local buffer."""
        self._joincancelled = True


class JoinableQueue(Queue):
    """A :class:`Queue` with ``task_done()`` and ``join()``, like :class:`multiprocessing.JoinableQueue`.

    The unfinished-task count is a Redis counter updated atomically with each
    put; ``join`` blocks in Redis until it reaches zero.
    """

    _kind = "jqueue"
    _key_suffixes = ("items", "space", "unfinished", "done")

    def _setup(self) -> None:
        super()._setup()
        self._joinable = "1"
        self._unfinished = self.key("unfinished")
        self._done = self.key("done")
        self._task_done_script = self._direct.script(TASK_DONE)

    def task_done(self) -> None:
        """Mark one task taken from the queue as finished."""
        if self._task_done_script(keys=[self._unfinished, self._done], args=[self._ttl]) < 0:
            raise ValueError("task_done() called too many times")

    def join(self, *, timeout: float | None = None) -> bool:
        """Block until every item put has been marked with :meth:`task_done`.

        *timeout* (a faasmp addition) bounds the wait; returns False if it
        passed first, True otherwise.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            raw = self._state.get(self._unfinished)
            if raw is None or int(raw) <= 0:
                return True
            if deadline is None:
                wait = 0.0
            else:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return False
                wait = _redis_timeout(wait)
            # The "done" list holds one element exactly while the count is 0
            # (task_done fills it, put empties it): a non-destructive blocking
            # read that any number of joiners can share.
            self._direct.blmove_rotate(self._done, wait)


class SimpleQueue(_ListQueue):
    """An unbounded queue (get, put, empty, close), like :class:`multiprocessing.SimpleQueue`."""

    _kind = "squeue"
    _key_suffixes = ("items",)

    def __init__(self, *, ctx: FaasContext | None = None) -> None:
        self._init_shared(ctx)
        self._setup()

    def _setup(self) -> None:
        super()._setup()
        self._closed = False
        self._get_script = self._direct.script(GET_NOW)
        self._put_keys = [self._items, self.key("space"), self.key("unfinished"), self.key("done")]

    def _setstate_extra(self, state: dict[str, Any]) -> None:
        self._setup()

    def _check_open(self) -> None:
        if self._closed:
            raise OSError("handle is closed")

    def put(self, obj: Any) -> None:
        """Put *obj* on the queue (sent to Redis before this returns; the reply is not awaited)."""
        self._check_open()
        dsm.release()
        self._push_unbounded(self._dumps(obj), "0")

    def get(self, *, timeout: float | None = None) -> Any:
        """Remove and return an item, blocking until there is one.

        *timeout* (a faasmp addition) bounds the wait and raises ``queue.Empty``.
        """
        self._check_open()
        if timeout is not None and timeout <= 0:
            blob = self._get_script(keys=[self._items, self._items], args=["0", SEM_VALUE_MAX, self._ttl])
        else:
            item = self._direct.blpop([self._items], 0 if timeout is None else _redis_timeout(timeout))
            blob = None if item is None else item[1]
        if blob is None:
            raise Empty
        dsm.acquire()
        return pickle.loads(self._signer.verify(blob))

    def empty(self) -> bool:
        """True if the queue is empty."""
        self._check_open()
        return self._size() == 0

    def close(self) -> None:
        """Close this handle (later calls on it raise OSError); other copies stay usable."""
        self._closed = True
