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
import time
import types
import weakref
from collections.abc import Callable
from queue import Empty, Full
from typing import TYPE_CHECKING, Any, ClassVar

from .backends.redis.queues import RedisQueue
from .backends.state import StateError
from .connection import Signer
from .runtime import bulk, dsm, metrics, pickling
from .runtime.call import dumps_named, payload_size, pickle_parts, pickle_plain
from .runtime.shared import SharedObject

if TYPE_CHECKING:
    from .backends.state import StateBackend
    from .context import FaasContext

__all__ = ["JoinableQueue", "Queue", "SimpleQueue"]

try:  # the stdlib's bound for "unbounded" queues
    from _multiprocessing import SemLock as _SemLock

    SEM_VALUE_MAX: int = _SemLock.SEM_VALUE_MAX
except (ImportError, AttributeError):  # pragma: no cover - platforms without sem_open
    SEM_VALUE_MAX = 2**31 - 1


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

    def _setup(self) -> None:
        session = self._session
        self._state = session.state
        self._authkey = session.authkey
        self._signer = Signer(session.authkey)
        # Set in host mode: large items travel through host files (faasmp.runtime.bulk).
        self._host = session.host_memory
        self._ttl = int(session.config.key_ttl * 1000)
        self._items = self.key("items")
        keys = [self._items, self.key("space"), self.key("unfinished"), self.key("done")]
        self._redis = RedisQueue(self._state, keys, self._ttl)
        self._on_put_reply = _put_reply_handler(weakref.ref(self))
        self._lost: BaseException | None = None
        self._m_put = metrics.counter("queue", f"{self._kind} {self._oid}", "put")
        self._m_get = metrics.counter("queue", f"{self._kind} {self._oid}", "get")

    def _push_unbounded(self, mac: Any, body: Any, joinable: bool) -> None:
        """Push onto an unbounded queue without waiting for Redis' reply.

        The command is written at once and runs in order with this thread's
        next commands; its reply (always "pushed") is collected with the next one.
        """
        self._check_lost()
        try:
            self._redis.queue_push(mac, body, joinable=joinable, on_reply=self._on_put_reply)
        except StateError:
            self._check_lost()  # the earlier put that was lost with the connection says more
            raise
        self._check_lost()

    def _check_lost(self) -> None:
        lost, self._lost = self._lost, None
        if lost is not None:
            raise StateError(f"an earlier item put on {self!r} was not stored: {lost}")

    def _dumps(self, obj: Any) -> tuple[Any, Any, int, bytes | None]:
        """(signature, pickle, size, host token) of *obj*, not joined: a large item is written as it is.

        The pickle of a large bytes/bytearray is a tuple of parts (see
        :func:`~faasmp.runtime.call.pickle_parts`), the item itself among them.
        In host mode a large pickle goes into a host file and the pair is its
        descriptor's (faasmp.runtime.bulk) and the token names its file; *size*
        is the item's signed size either way.
        """
        body: Any = pickle_parts(obj)
        if body is None:
            body = pickle_plain(obj)  # the C pickler for plain data
        if body is None:
            try:
                body = pickling.dumps(obj)
            except Exception:  # noqa: BLE001 - redo it to raise one clear error naming the queue
                blob = memoryview(dumps_named(obj, self._authkey, f"an item put on {self!r}"))
                return blob[:32], blob[32:], blob.nbytes, None
        nbytes = 32 + payload_size(body)
        mac, body, token = bulk.seal(self._signer, self._host, body, f"queue {self._oid}")
        return mac, body, nbytes, token

    def _loads(self, blob: bytes | bytearray | memoryview, t0: float) -> Any:
        """The item in a received element (read from its host file if it has one)."""
        body = bulk.unseal(self._signer, self._host, blob, f"queue {self._oid}", self._redis.take_buffer)
        self._m_get.since(t0, 32 + len(body))
        dsm.acquire()  # a get is an acquire of shared memory
        item = pickling.loads(body)
        self._redis.recycle(body)  # the item holds no view of it: pickle copies
        return item

    def _size(self) -> int:
        return self._redis.queue_size()

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
        self._bounded = self._maxsize < SEM_VALUE_MAX
        self._joinable = False

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
        mac, body, nbytes, token = self._dumps(obj)
        self._m_put.add(nbytes)
        if not self._bounded:
            self._push_unbounded(mac, body, self._joinable)
            return
        blob = self._redis.bounded_item(mac, body)
        try:
            if self._put_bounded(blob, block, timeout):
                return
        except BaseException:
            bulk.discard(self._host, token)  # not sent: its host file (if any) goes now
            raise
        bulk.discard(self._host, token)
        raise Full

    def _put_bounded(self, blob: Any, block: bool, timeout: float | None) -> bool:
        """Push *blob* onto the bounded queue, waiting for room as ``put`` says; False if full."""
        redis, maxsize, joinable = self._redis, self._maxsize, self._joinable
        if redis.queue_put(blob, maxsize, joinable=joinable):
            return True
        if not block or (timeout is not None and timeout <= 0):
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is None:
                redis.queue_wait_space(0)
            else:
                left = deadline - time.monotonic()
                if left <= 0 or not redis.queue_wait_space(_redis_timeout(left)):
                    # One last try: room may have been made just as we gave up.
                    return bool(redis.queue_put(blob, maxsize, joinable=joinable))
            if redis.queue_put(blob, maxsize, joinable=joinable):
                return True

    def put_nowait(self, obj: Any) -> None:
        """``put(obj, False)``."""
        self.put(obj, False)

    # -- get ----------------------------------------------------------------
    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item, waiting up to *timeout* seconds (``queue.Empty``)."""
        self._check_open()
        t0 = time.perf_counter()
        blob: bytes | bytearray | memoryview | None
        if not block or (timeout is not None and timeout <= 0):
            blob = self._redis.queue_get_now(bounded=self._bounded, maxsize=self._maxsize)
            if blob is None:
                raise Empty
        else:
            blob = self._redis.queue_get(0 if timeout is None else _redis_timeout(timeout))
            if blob is None:
                raise Empty
            if self._bounded:
                self._redis.queue_space_freed(self._maxsize)
        return self._loads(blob, t0)

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
        self._joinable = True

    def task_done(self) -> None:
        """Mark one task taken from the queue as finished."""
        if self._redis.task_done() < 0:
            raise ValueError("task_done() called too many times")

    def join(self, *, timeout: float | None = None) -> bool:
        """Block until every item put has been marked with :meth:`task_done`.

        *timeout* (a faasmp addition) bounds the wait; returns False if it
        passed first, True otherwise.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._redis.unfinished_tasks() <= 0:
                return True
            if deadline is None:
                wait = 0.0
            else:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return False
                wait = _redis_timeout(wait)
            self._redis.wait_all_done(wait)


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

    def _setstate_extra(self, state: dict[str, Any]) -> None:
        self._setup()

    def _check_open(self) -> None:
        if self._closed:
            raise OSError("handle is closed")

    def put(self, obj: Any) -> None:
        """Put *obj* on the queue (sent to Redis before this returns; the reply is not awaited)."""
        self._check_open()
        dsm.release()
        mac, body, nbytes, _ = self._dumps(obj)
        self._m_put.add(nbytes)
        self._push_unbounded(mac, body, False)

    def get(self, *, timeout: float | None = None) -> Any:
        """Remove and return an item, blocking until there is one.

        *timeout* (a faasmp addition) bounds the wait and raises ``queue.Empty``.
        """
        self._check_open()
        t0 = time.perf_counter()
        blob: bytes | bytearray | memoryview | None
        if timeout is not None and timeout <= 0:
            blob = self._redis.queue_get_now(bounded=False, maxsize=SEM_VALUE_MAX)
        else:
            blob = self._redis.queue_get(0 if timeout is None else _redis_timeout(timeout))
        if blob is None:
            raise Empty
        return self._loads(blob, t0)

    def empty(self) -> bool:
        """True if the queue is empty."""
        self._check_open()
        return self._size() == 0

    def close(self) -> None:
        """Close this handle (later calls on it raise OSError); other copies stay usable."""
        self._closed = True
