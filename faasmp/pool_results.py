"""The results a :class:`~faasmp.pool.Pool` hands out: ``AsyncResult``, ``MapResult``, the ``imap`` iterators.

They are the stdlib's objects with the stdlib's semantics; the pool's result
handler thread delivers each task's outcome to them through ``_set`` (and
``_fail`` when a worker is lost or the pool is terminated).  Import them from
:mod:`faasmp.pool`, as from ``multiprocessing.pool``.
"""

from __future__ import annotations

import abc
import collections
import itertools
import threading
import time
from collections.abc import Callable
from multiprocessing import TimeoutError
from typing import TYPE_CHECKING, Any

from .runtime.call import ExceptionInfo
from .stats import JobFinished

if TYPE_CHECKING:
    from .pool import Pool

#: Numbers jobs (and pools) of this process: a result's key in its pool's cache.
job_counter = itertools.count()


class PoolResult(abc.ABC):
    """What the pool's cache holds: anything a task result can be delivered to."""

    _job: int

    @abc.abstractmethod
    def _set(self, index: int, obj: tuple[bool, Any]) -> None: ...

    @abc.abstractmethod
    def _fail(self, exc: BaseException) -> None: ...

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> None: ...


def _value(ok: bool, value: Any) -> Any:
    return value if ok else (value.rebuild() if isinstance(value, ExceptionInfo) else value)


class ApplyResult(PoolResult):
    """Result of :meth:`Pool.apply_async` (``AsyncResult``)."""

    def __init__(
        self,
        pool: Pool,
        callback: Callable[[Any], Any] | None,
        error_callback: Callable[[BaseException], Any] | None,
    ) -> None:
        self._pool = pool
        self._event = threading.Event()
        self._job = next(job_counter)
        self._cache = pool._cache
        self._callback = callback
        self._error_callback = error_callback
        self._success = False
        self._value: Any = None
        with pool._lock:
            pool._cache[self._job] = self

    def ready(self) -> bool:
        """True once the result (or error) is available."""
        return self._event.is_set()

    def successful(self) -> bool:
        """True if the call did not raise; ValueError if not ready yet."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._success

    def wait(self, timeout: float | None = None) -> None:
        """Block until ready or *timeout* seconds pass."""
        self._event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result; re-raises the remote exception; TimeoutError after *timeout*."""
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError
        if self._success:
            return self._value
        raise self._value

    def _set(self, index: int, obj: tuple[bool, Any]) -> None:
        ok, value = obj
        self._success = ok
        self._value = _value(ok, value)
        if ok and self._callback:
            self._callback(self._value)
        if not ok and self._error_callback:
            self._error_callback(self._value)
        self._finish()

    def _fail(self, exc: BaseException) -> None:
        if not self.ready():
            self._set(0, (False, exc))

    def _finish(self) -> None:
        # The job's end is reported before a waiter wakes, so what listens to
        # it (the granularity advisor's warning, the dashboard) has run by
        # the time map()/get() returns, not at some point after it.
        self._pool._session.stats.emit(
            JobFinished(f"{self._pool._pool_id}:{self._job}", time.time(), self._success)
        )
        self._event.set()
        with self._pool._lock:
            self._cache.pop(self._job, None)


AsyncResult = ApplyResult


class MapResult(ApplyResult):
    """Result of :meth:`Pool.map_async`."""

    def __init__(
        self,
        pool: Pool,
        chunksize: int,
        length: int,
        callback: Callable[[Any], Any] | None,
        error_callback: Callable[[BaseException], Any] | None,
    ) -> None:
        super().__init__(pool, callback, error_callback)
        self._success = True
        self._value = [None] * length
        self._chunksize = chunksize
        if chunksize <= 0:
            self._number_left = 0
            self._finish()
        else:
            self._number_left = length // chunksize + bool(length % chunksize)

    def _set(self, index: int, obj: tuple[bool, Any]) -> None:
        ok, value = obj
        self._number_left -= 1
        if ok and self._success:
            self._value[index * self._chunksize : (index + 1) * self._chunksize] = value
            if self._number_left == 0:
                if self._callback:
                    self._callback(self._value)
                self._finish()
        elif not ok and self._success:
            self._success = False
            self._value = _value(ok, value)
            if self._error_callback:
                self._error_callback(self._value)
            self._finish()

    def _fail(self, exc: BaseException) -> None:
        if not self.ready():
            self._set(0, (False, exc))


class IMapIterator(PoolResult):
    """Iterator of :meth:`Pool.imap`: ordered results, each as soon as it is ready."""

    def __init__(self, pool: Pool, chunksize: int) -> None:
        self._pool = pool
        self._cond = threading.Condition(threading.Lock())
        self._job = next(job_counter)
        self._cache = pool._cache
        self._items: collections.deque[tuple[bool, Any]] = collections.deque()
        self._index = 0
        self._length: int | None = None
        self._unsorted: dict[int, tuple[bool, Any]] = {}
        self._done_chunks = 0
        with pool._lock:
            pool._cache[self._job] = self

    def __iter__(self) -> IMapIterator:
        return self

    def next(self, timeout: float | None = None) -> Any:
        """The next result; TimeoutError if none within *timeout*."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._index == self._length:
                    raise StopIteration
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError
                self._cond.wait(left)
            ok, value = self._items.popleft()
            self._cond.notify_all()  # the feeder may be waiting for room
        if ok:
            return value
        raise _value(ok, value)

    __next__ = next

    def wait(self, timeout: float | None = None) -> None:
        with self._cond:
            if self._length is None or self._index < self._length:
                self._cond.wait(timeout)

    def _put_chunk(self, ok: bool, value: Any) -> None:
        if ok:
            self._items.extend((True, v) for v in value)
        else:
            self._items.append((False, value))

    def _set(self, index: int, obj: tuple[bool, Any]) -> None:
        with self._cond:
            if self._index == index:
                self._put_chunk(*obj)
                self._index += 1
                while self._index in self._unsorted:
                    self._put_chunk(*self._unsorted.pop(self._index))
                    self._index += 1
                self._cond.notify_all()
            else:
                self._unsorted[index] = obj
            self._maybe_finish()

    def _set_length(self, length: int) -> None:
        with self._cond:
            self._length = length
            self._cond.notify_all()
            self._maybe_finish()

    def _maybe_finish(self) -> None:
        if self._index == self._length:
            self._cond.notify_all()
            with self._pool._lock:
                self._cache.pop(self._job, None)
            self._pool._session.stats.emit(
                JobFinished(f"{self._pool._pool_id}:{self._job}", time.time(), True)
            )

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            self._items.append((False, exc))
            self._length = self._index + 1 if self._length is None else self._length
            self._index = self._length
            self._cond.notify_all()
            with self._pool._lock:
                self._cache.pop(self._job, None)


class IMapUnorderedIterator(IMapIterator):
    """Iterator of :meth:`Pool.imap_unordered`: results in completion order."""

    def _set(self, index: int, obj: tuple[bool, Any]) -> None:
        with self._cond:
            self._put_chunk(*obj)
            self._index += 1
            self._cond.notify_all()
            self._maybe_finish()
