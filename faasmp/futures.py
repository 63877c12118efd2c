"""``concurrent.futures.ProcessPoolExecutor`` on faasmp workers.

A thin executor over :class:`faasmp.pool.Pool`: ``submit`` is
``apply_async`` with a :class:`concurrent.futures.Future`, ``map`` chunks like
the stdlib's.  A worker that dies marks the executor broken and fails its
futures with :class:`~concurrent.futures.process.BrokenProcessPool`, as the
stdlib does.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .pool import WorkerLostError

__all__ = ["BrokenProcessPool", "ProcessPoolExecutor"]


def _apply_chunk(fn: Callable[..., Any], chunk: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*args) for args in chunk]


class ProcessPoolExecutor(Executor):
    """Like :class:`concurrent.futures.ProcessPoolExecutor`; workers are faasmp workers.

    *mp_context* may be a faasmp context (or None for the default one); a
    stdlib context is refused with a clear error since its processes would be local.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        max_tasks_per_child: int | None = None,
    ) -> None:
        from .context import FaasContext, default_context  # noqa: PLC0415

        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if max_tasks_per_child is not None and (
            not isinstance(max_tasks_per_child, int) or max_tasks_per_child <= 0
        ):
            raise ValueError("max_tasks_per_child must be >= 1")
        ctx = default_context() if mp_context is None else mp_context
        if not isinstance(ctx, FaasContext) and not hasattr(ctx, "_base"):
            raise TypeError(f"mp_context must be a faasmp context (faasmp.get_context()), got {ctx!r}")
        self._pool = ctx.Pool(max_workers, initializer, initargs, max_tasks_per_child)
        self._max_workers = self._pool._processes
        self._lock = threading.Lock()
        self._pending: set[Future[Any]] = set()
        self._shutdown = False
        self._broken: str | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Schedule ``fn(*args, **kwargs)``; returns a Future."""
        with self._lock:
            if self._broken:
                raise BrokenProcessPool(self._broken)
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: Future[Any] = Future()
            self._pending.add(future)

        def done(value: Any) -> None:
            self._settle(future, value, None)

        def failed(exc: BaseException) -> None:
            self._settle(future, None, exc)

        self._pool.apply_async(fn, args, kwargs, callback=done, error_callback=failed)
        return future

    def _settle(self, future: Future[Any], value: Any, exc: BaseException | None) -> None:
        with self._lock:
            self._pending.discard(future)
        if isinstance(exc, WorkerLostError):
            self._broken = (
                "A process in the process pool was terminated abruptly while the future was "
                f"running or pending: {exc}"
            )
            broken = BrokenProcessPool(self._broken)
            broken.__cause__ = exc
            exc = broken
        if not future.set_running_or_notify_cancel():
            return
        if exc is None:
            future.set_result(value)
        else:
            future.set_exception(exc)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """Like :func:`map`, results in order; *chunksize* batches calls per task."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        args = zip(*iterables, strict=False)
        chunks = iter(lambda: list(itertools.islice(args, chunksize)), [])
        futures = [self.submit(_apply_chunk, fn, chunk) for chunk in chunks]
        return _chain_results(futures, timeout)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; with *cancel_futures*, cancel what has not started."""
        with self._lock:
            self._shutdown = True
            pending = list(self._pending)
        if cancel_futures:
            for f in pending:
                f.cancel()
            self._pool.terminate()
            return
        if wait:
            for f in pending:
                try:
                    f.exception()
                except BaseException:  # noqa: BLE001, S110 - waiting only
                    pass
            self._pool.close()
            self._pool.join()
        else:
            self._pool.close()


def _chain_results(futures: list[Future[Any]], timeout: float | None) -> Iterator[Any]:
    import time  # noqa: PLC0415

    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        futures.reverse()
        while futures:
            f = futures.pop()
            left = None if deadline is None else deadline - time.monotonic()
            yield from f.result(left)
    finally:
        for f in futures:
            f.cancel()
