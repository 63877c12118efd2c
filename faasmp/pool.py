"""``Pool`` with the stdlib's API, whose workers are warm serverless functions.

A ``Pool(n)`` leases *n* slots of the warm pool: each runs the initializer once
and then takes chunks from the pool's task list in Redis until the sentinel
(or ``maxtasksperchild`` chunks, after which it is replaced, as in the
stdlib).  Results come back on the pool's result list to a handler thread.

Differences from the stdlib: a worker that dies mid-task fails that task's
result with :class:`WorkerLostError` instead of hanging, and ``terminate()``
fails results still outstanding with :class:`PoolTerminated`; ``ThreadPool``
is the stdlib's (threads stay local).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import ProcessError
from multiprocessing.pool import MaybeEncodingError, ThreadPool  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

from .backends.redis.pool import PoolQueues, PoolResultsQueue
from .patch import is_patched
from .pool_results import (
    ApplyResult,
    AsyncResult,
    IMapIterator,
    IMapUnorderedIterator,
    MapResult,
    PoolResult,
    job_counter,
)
from .runtime import bulk, dsm
from .runtime import protocol as msgs
from .runtime.call import (
    CallKind,
    ExceptionInfo,
    RemoteCall,
    dumps,
    dumps_message,
    dumps_named,
    dumps_payload_parts,
    loads,
    pickle_named_parts,
    pickle_plain_parts,
)
from .runtime.pickling import loads as loads_body
from .stats import JobStarted, TaskFinished, TaskRecord

if TYPE_CHECKING:
    from .context import FaasContext
    from .runtime.session import Session

__all__ = [
    "ApplyResult",
    "AsyncResult",
    "IMapIterator",
    "IMapUnorderedIterator",
    "MapResult",
    "MaybeEncodingError",
    "Pool",
    "PoolTerminated",
    "ResultUnpicklingError",
    "ThreadPool",
    "WorkerLostError",
]

logger = logging.getLogger(__name__)

RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"
_SUBMIT_BATCH = 512
_IMAP_AHEAD = 1024  # chunks imap submits beyond what the caller has taken
#: Seconds a pool's first submit waits for the run's start (the embedded
#: server answers in ~35 ms and gives up after 10 s; see ClientSession).
_OPEN_WAIT = 90.0


class WorkerLostError(ProcessError):
    """The worker running a task died (killed, crashed, its function ended)."""


class PoolTerminated(ProcessError):
    """The pool was terminated before this result was computed."""


class ResultUnpicklingError(MaybeEncodingError):
    """A task's result (or exception) arrived but could not be unpickled in this process.

    A :class:`multiprocessing.pool.MaybeEncodingError`, as for a result the
    worker could not send; the unpickling error is ``exc`` and ``__cause__``.
    """

    def __init__(self, exc: BaseException, what: str) -> None:
        super().__init__(exc, what)
        self.what = what

    def __str__(self) -> str:
        return f"{self.what} could not be unpickled in this process: {self.exc}"


class Pool:
    """A pool of warm serverless workers, like :class:`multiprocessing.pool.Pool`.

    ``Pool(processes=None, initializer=None, initargs=(), maxtasksperchild=None, context=None)``;
    *processes* defaults to ``os.cpu_count()``.
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: FaasContext | None = None,
    ) -> None:
        self._state = RUN  # set first: __del__ looks at it even when __init__ fails
        if processes is None:
            processes = os.cpu_count() or 1
        if not isinstance(processes, int) or isinstance(processes, bool):
            raise TypeError(f"processes must be an int, got {type(processes).__name__}")
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int) or maxtasksperchild <= 0):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if context is None:
            from .context import default_context  # noqa: PLC0415

            context = default_context()
        self._ctx = context
        self._session: Session = context.session
        session = self._session
        if processes > session.config.max_workers:
            raise ValueError(
                f"Pool({processes}) exceeds max_workers={session.config.max_workers}; "
                "raise FAASMP_MAX_WORKERS or use fewer processes"
            )
        self._processes = processes
        self._maxtasksperchild = maxtasksperchild
        self._pool_id = f"{os.getpid()}x{next(job_counter)}x{os.urandom(3).hex()}"
        k = session.keys
        self._tasks_key = k.pool_tasks(self._pool_id)
        self._results_key = k.pool_results(self._pool_id)
        self._funcs_key = k.pool_funcs(self._pool_id)
        self._alive_key = k.pool_alive(self._pool_id)
        self._queues = PoolQueues(session.state, k, self._pool_id)
        self._init_blob = (
            dumps_named(
                (initializer, tuple(initargs)),
                session.authkey,
                f"initializer {initializer!r}",
                session.config,
            )
            if initializer is not None
            else None
        )
        self._cache: dict[int, PoolResult] = {}
        self._lock = threading.RLock()
        self._meta: dict[tuple[int, int], tuple[float, float, float]] = {}
        self._fn_keys: set[bytes] = set()
        self._workers: dict[str, str] = {}  # slot id -> host id
        # Leases not yet acknowledged by a worker's "started" (lease id -> blob):
        # queued in the work queue, or taken by a slot whose start is in flight.
        self._leases: dict[str, bytes] = {}
        self._lease_count = 0
        self._lost_unstarted = 0
        # Outstanding task blobs, kept to re-run a task whose worker died.
        self._retries_allowed = session.config.task_retries
        self._blobs: dict[tuple[int, int], bytes | tuple[bytes, ...]] = {}
        self._tries: dict[tuple[int, int], int] = {}
        # Host files of outstanding tasks' arguments (host mode: runtime.bulk),
        # removed when the task's result arrives.
        self._arg_files: dict[tuple[int, int], bytes] = {}
        self._broken: BaseException | None = None
        # Set by the handler when it reads the wake-up message that terminate()
        # or join() pushes after every worker's sentinel: from then on it may
        # delete the pool's keys once the last worker left (earlier, a sentinel
        # pushed after the delete would recreate a key without a TTL).
        self._dismissed = False
        self._killing = False  # terminate(): a worker busy with a task is killed
        self._ttl_ms = int(session.config.heartbeat_interval * 6000)
        context._register_work(self)
        # Set once the pool's liveness key and its workers' leases are in
        # Redis.  A run still starting its embedded server (the program's first
        # Pool) leaves that to the handler thread, so Pool() returns at once;
        # the first submit (and terminate, join) waits for it.
        self._opened = threading.Event()
        if session.started:
            self._open()
        self._handler = threading.Thread(
            target=_handle_results,
            args=(weakref.ref(self), session, self._results_key),
            name=f"faasmp-pool-{self._pool_id}",
            daemon=True,
        )
        self._handler.start()

    # -- workers ------------------------------------------------------------
    def _open(self) -> None:
        """Write the pool's liveness key and lease its workers (Redis is needed from here on)."""
        try:
            self._session.state.set(self._alive_key, b"1", px=self._ttl_ms)
            self._lease(self._processes)
        finally:
            self._opened.set()  # a failure is raised here; waiters then see the pool broken

    def _wait_open(self) -> None:
        """Wait until :meth:`_open` ran (in the handler thread, for a pool made while its run started)."""
        if not self._opened.wait(_OPEN_WAIT):
            raise ProcessError(
                f"faasmp pool {self._pool_id}: its run did not start within {_OPEN_WAIT:.0f} s "
                "(the embedded Redis server did not answer)"
            )

    def _lease(self, n: int) -> None:
        session = self._session
        blobs = []
        for _ in range(n):
            self._lease_count += 1
            lease_id = f"{self._pool_id}.{self._lease_count}"
            desc = msgs.PoolLease(
                pool_id=self._pool_id,
                initializer=self._init_blob,
                maxtasksperchild=self._maxtasksperchild,
                worker_index=self._lease_count,
                worker_name=f"ForkPoolWorker-{self._lease_count}",
            )
            call = RemoteCall(
                CallKind.POOL_WORKER,
                lease_id,
                desc,
                session.now(),
                _log_level(),
                patched=is_patched(),
            )
            blob = dumps(call, session.authkey)
            blobs.append(blob)
            with self._lock:
                self._leases[lease_id] = blob
        session.push_work(*blobs)

    @property
    def _pool(self) -> list[str]:
        """Worker slot ids (stands in for the stdlib's list of worker processes)."""
        return list(self._workers) or [""] * self._processes

    # -- submission ---------------------------------------------------------
    def _check_running(self, *, opened: bool = True) -> None:
        """Raise unless work can be submitted; *opened*: first wait until the pool is in Redis."""
        if self._state != RUN:
            raise ValueError("Pool not running")
        if opened:
            self._wait_open()
        if self._broken is not None:
            raise self._broken

    def _fn_key(self, func: Callable[..., Any]) -> tuple[bytes, bytes | None]:
        """The key of *func*'s stored blob, and the blob if it is not stored yet."""
        blob = dumps_named(func, self._session.authkey, f"function {func!r}", self._session.config)
        key = hashlib.blake2b(blob, digest_size=12).digest()
        if key in self._fn_keys:
            return key, None
        self._fn_keys.add(key)
        return key, blob

    def _submit(
        self, job: int, func: Callable[..., Any], mode: msgs.TaskMode, chunks: Iterable[tuple[int, Any]]
    ) -> None:
        """Push the chunks of a job (in batches) to the pool's task list."""
        dsm.release()  # submitting tasks is a release of shared memory
        session = self._session
        authkey = session.authkey
        host = session.host_memory
        fn_key, fn_blob = self._fn_key(func)
        # The function goes with the first batch (a first job with no task stores it alone).
        function = None if fn_blob is None else (fn_key, fn_blob)
        batch: list[bytes | tuple[bytes, ...]] = []
        metas: list[tuple[int, float, float]] = []
        for index, chunk in chunks:
            t0 = time.perf_counter()
            submitted = time.time()
            body = pickle_plain_parts(chunk) or pickle_named_parts(chunk, f"the arguments of task {index}")
            task = functools.partial(msgs.PoolTask, job, index, fn_key, mode)
            where = f"task {index} of job {job} of pool {self._pool_id}"
            blob, stashed = bulk.seal_payload(host, task, body, authkey, where, dumps_payload_parts)
            if stashed is not None:
                with self._lock:
                    self._arg_files[(job, index)] = stashed
            batch.append(blob)
            metas.append((index, submitted, time.perf_counter() - t0))
            if len(batch) >= _SUBMIT_BATCH:
                self._push(function, job, batch, metas)
                function = None
                batch, metas = [], []
        if batch or function is not None:
            self._push(function, job, batch, metas)

    def _push(
        self,
        function: tuple[bytes, bytes] | None,
        job: int,
        batch: list[bytes | tuple[bytes, ...]],
        metas: list[tuple[int, float, float]],
    ) -> None:
        # Record before the upload: a fast task's result can arrive before
        # execute() returns, and its stats record must not be lost.
        with self._lock:
            for (index, submitted, ser), blob in zip(metas, batch, strict=True):
                self._meta[(job, index)] = (submitted, ser, submitted + ser)
                if self._retries_allowed:
                    self._blobs[(job, index)] = blob
        self._queues.upload(batch, function)
        uploaded = time.time()
        with self._lock:
            for index, submitted, ser in metas:
                if (job, index) in self._meta:  # still outstanding
                    self._meta[(job, index)] = (submitted, ser, uploaded)

    def _start_job(self, result: PoolResult, n_tasks: int) -> None:
        self._session.stats.emit(JobStarted(f"{self._pool_id}:{result._job}", "pool", n_tasks, time.time()))

    # -- stdlib API ---------------------------------------------------------
    def apply(
        self, func: Callable[..., Any], args: Iterable[Any] = (), kwds: dict[str, Any] | None = None
    ) -> Any:
        """Call ``func(*args, **kwds)`` in a worker and wait for the result."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: dict[str, Any] | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> ApplyResult:
        """Like :meth:`apply` but returns an :class:`AsyncResult` at once."""
        self._check_running()
        result = ApplyResult(self, callback, error_callback)
        self._start_job(result, 1)
        self._submit(result._job, func, msgs.TaskMode.APPLY, [(0, (tuple(args), dict(kwds or {})))])
        return result

    def map(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None = None
    ) -> list[Any]:
        """``list(map(func, iterable))`` computed by the workers, in order."""
        return self._map_async(func, iterable, msgs.TaskMode.MAP, chunksize).get()

    def starmap(
        self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]], chunksize: int | None = None
    ) -> list[Any]:
        """Like :meth:`map`, calling ``func(*args)`` for each item."""
        return self._map_async(func, iterable, msgs.TaskMode.STARMAP, chunksize).get()

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> MapResult:
        return self._map_async(func, iterable, msgs.TaskMode.MAP, chunksize, callback, error_callback)

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> MapResult:
        return self._map_async(func, iterable, msgs.TaskMode.STARMAP, chunksize, callback, error_callback)

    def _map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        mode: msgs.TaskMode,
        chunksize: int | None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> MapResult:
        self._check_running()
        items = iterable if hasattr(iterable, "__len__") else list(iterable)
        n = len(items)  # type: ignore[arg-type]
        if chunksize is None:
            chunksize, extra = divmod(n, self._processes * 4)
            if extra:
                chunksize += 1
        elif chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize}")
        if n == 0:
            chunksize = 0
        result = MapResult(self, chunksize, n, callback, error_callback)
        if n:
            chunks = list(_chunks(items, chunksize))
            self._start_job(result, len(chunks))
            self._submit(result._job, func, mode, enumerate(chunks))
        return result

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1) -> IMapIterator:
        """Lazy, ordered :meth:`map`: results are yielded as soon as they are ready."""
        return self._imap(IMapIterator, func, iterable, chunksize)

    def imap_unordered(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> IMapIterator:
        """Like :meth:`imap`, yielding results in completion order."""
        return self._imap(IMapUnorderedIterator, func, iterable, chunksize)

    def _imap(
        self, cls: type[IMapIterator], func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int
    ) -> IMapIterator:
        self._check_running()
        if chunksize < 1:
            raise ValueError(f"Chunksize must be 1+, not {chunksize:n}")
        result = cls(self, chunksize)
        self._start_job(result, 0)
        # The stdlib feeds the iterable from a thread, so a slow or endless
        # generator does not block the caller; so do we.
        threading.Thread(
            target=self._feed,
            args=(result, func, iterable, chunksize),
            name="faasmp-pool-feeder",
            daemon=True,
        ).start()
        return result

    def _feed(
        self, result: IMapIterator, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int
    ) -> None:
        count = 0
        # A list, tuple or range is already in memory: its chunks go up in
        # batches (one round trip each).  Any other iterable is fed chunk by
        # chunk, so each task is submitted as soon as the iterable yields it.
        batched = isinstance(iterable, (list, tuple, range))
        chunks = enumerate(_chunks(iterable, chunksize))
        try:
            while True:
                # Stop with the pool, and stay at most _IMAP_AHEAD chunks ahead
                # of the consumer so an endless generator does not fill Redis.
                with result._cond:
                    while self._state == RUN and len(result._items) + count - result._index > _IMAP_AHEAD:
                        result._cond.wait(0.1)
                    room = _IMAP_AHEAD + 1 - (len(result._items) + count - result._index)
                if self._state != RUN:
                    return
                batch = list(itertools.islice(chunks, max(1, min(room, _SUBMIT_BATCH)) if batched else 1))
                if not batch:
                    break
                self._submit(result._job, func, msgs.TaskMode.MAP, batch)
                count = batch[-1][0] + 1
        except Exception as exc:  # noqa: BLE001 - the iterable's error goes to the caller
            result._set(count, (False, ExceptionInfo.capture(exc)))
            count += 1
        result._set_length(count)

    # -- lifecycle ----------------------------------------------------------
    def close(self) -> None:
        """No more work will be submitted; workers leave when the queued work is done."""
        if self._state == RUN:
            self._state = CLOSE

    def terminate(self) -> None:
        """Stop the workers now; outstanding results fail with :class:`PoolTerminated`.

        Returns once every worker of the pool has left it (idle ones take a
        sentinel, busy ones are killed by their host), normally within a few
        milliseconds; it never waits more than 5 s.
        """
        if self._state == TERMINATE:
            return
        self._state = TERMINATE
        self._killing = True
        session = self._session
        if session.closed:
            return
        try:
            self._dismiss_workers(kill_busy=True)
        except Exception:  # noqa: BLE001 - terminate never raises on a dead backend
            logger.debug("faasmp pool terminate", exc_info=True)
            self._dismissed = True  # no wake-up message will come
        self._fail_all(PoolTerminated("the pool was terminated before this task finished"))
        self._join_handler(5.0)
        if self._handler.is_alive() and threading.current_thread() is not self._handler:
            with self._lock:
                waiting = sorted(self._workers) + sorted(self._leases)
            logger.warning(
                "faasmp pool %s: workers %s did not leave within 5 s of terminate(); "
                "their slots leave when they notice the pool is gone",
                self._pool_id,
                waiting,
            )

    def _dismiss_workers(self, *, kill_busy: bool) -> None:
        """Withdraw queued leases and send one sentinel to every worker the pool has.

        A worker is counted whether its "started" message was handled already
        or is still on its way: a lease that is no longer in the work queue
        was taken by a slot that will start serving this pool.  Without those,
        a worker whose start crossed ``terminate()`` got no sentinel and the
        handler waited (5 s) for its exit.  The handler leaves once every
        worker acknowledged (``exit`` or ``lost``).
        """
        session = self._session
        self._wait_open()  # the leases to withdraw are in Redis
        with self._lock:
            leases = dict(self._leases)
        removed = self._queues.withdraw_leases(list(leases.values()))
        with self._lock:
            for lease_id, n in zip(leases, removed, strict=True):
                if n:  # still queued: no slot will ever serve it
                    self._leases.pop(lease_id, None)
            workers = dict(self._workers)
            # Leases taken by a slot whose "started" has not been handled yet.
            starting = len(self._leases)
        authkey = session.authkey
        sentinels = [dumps_message(msgs.SENTINEL, authkey)] * (len(workers) + starting)
        kills = [
            (host, dumps_message(msgs.KillBusy(slot, self._pool_id), authkey))
            for slot, host in workers.items()
            if kill_busy
        ]
        # Tasks not started yet never run after terminate(); the wake-up
        # message goes last: the handler, which may be blocked waiting for a
        # result, learns that every sentinel is out.
        self._queues.dismiss(sentinels, kills, dumps_message(msgs.DISMISSED, authkey), drop_tasks=kill_busy)

    def _join_handler(self, timeout: float | None) -> None:
        if threading.current_thread() is self._handler:
            return  # terminate() from a callback: the handler finishes on its own
        self._handler.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the workers to finish (after :meth:`close` or :meth:`terminate`)."""
        if self._state == RUN:
            raise ValueError("Pool is still running")
        if self._state == CLOSE:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                with self._lock:
                    pending = list(self._cache.values())
                if not pending:
                    break
                left = None if deadline is None else max(deadline - time.monotonic(), 0)
                pending[0].wait(left)
                if deadline is not None and time.monotonic() >= deadline:
                    return
            self._release()
        self._join_handler(timeout)

    def _release(self) -> None:
        """All work is done: send the workers home and delete the pool's keys."""
        session = self._session
        if session.closed:
            return
        self._state = TERMINATE
        try:
            self._dismiss_workers(kill_busy=False)
            session.state.delete(self._alive_key, self._funcs_key)
        except BaseException:
            self._dismissed = True  # no wake-up message will come
            raise

    def _fail_all(self, exc: BaseException) -> None:
        with self._lock:
            results = list(self._cache.values())
            self._blobs.clear()
            self._tries.clear()
            arg_files, self._arg_files = list(self._arg_files.values()), {}
        for arg_file in arg_files:
            bulk.discard_payload(self._session.host_memory, arg_file)
        for r in results:
            r._fail(exc)

    def __enter__(self) -> Pool:
        self._check_running(opened=False)  # ``with Pool() as p`` returns as early as Pool()
        return self

    def __exit__(self, *exc: object) -> None:
        self.terminate()

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __repr__(self) -> str:
        return f"<faasmp.pool.Pool state={self._state} pool_size={self._processes}>"

    def __del__(self) -> None:
        if getattr(self, "_state", None) == RUN and hasattr(self, "_handler"):
            import warnings  # noqa: PLC0415

            warnings.warn(f"unclosed running multiprocessing pool {self!r}", ResourceWarning, stacklevel=1)
            try:
                self.terminate()
            except Exception:  # noqa: BLE001, S110 - never raise from __del__
                pass

    # -- results (called by the handler thread) ------------------------------
    def _on_message(self, msg: Any) -> None:
        """Handle one message from the pool's workers (or their hosts)."""
        match msg:
            case msgs.TaskDone():
                self._on_done(msg)
            case msgs.WorkerStarted(slot=slot, host=host, lease_id=lease_id):
                with self._lock:
                    self._workers[slot] = host
                    self._leases.pop(lease_id, None)
                if self._killing:
                    # Its start crossed terminate(): a sentinel is queued for it, but
                    # it may have taken a task first; end that task as terminate() does.
                    ctl = self._session.keys.host_ctl(host)
                    kill = msgs.KillBusy(slot, self._pool_id)
                    self._session.state.rpush(ctl, dumps_message(kill, self._session.authkey))
            case msgs.WorkerExited(slot=slot, reason=reason):
                with self._lock:
                    self._workers.pop(slot, None)
                if self._state != TERMINATE and reason == "maxtasksperchild":
                    self._lease(1)
            case msgs.WorkerLost():
                self._on_lost(msg)
            case msgs.InitFailed(slot=slot, error=info):
                exc = info.rebuild()
                init_error = ProcessError(f"the Pool initializer failed in worker {slot}: {exc!r}")
                init_error.__cause__ = exc
                self._broken = init_error
                self._fail_all(init_error)
            case msgs.Dismissed():  # pushed by _dismiss_workers: every sentinel is out
                self._dismissed = True
            case _:
                logger.warning("faasmp pool %s: ignored an unexpected message %r", self._pool_id, msg)

    def _on_lost(self, msg: msgs.WorkerLost) -> None:
        slot, job, index, cause = msg.slot, msg.job, msg.index, msg.cause
        with self._lock:
            was_started = self._workers.pop(slot, None) is not None
            if self._leases and not was_started:
                # The lease this slot had taken (the host does not know which:
                # any one, only the count matters once the slot is gone).
                self._leases.pop(next(iter(self._leases)))
        if self._state == TERMINATE:
            return
        # Workers dying before they ever start (a broken runtime) would be
        # re-leased forever; three in a row break the pool instead.
        self._lost_unstarted = 0 if was_started else self._lost_unstarted + 1
        if self._lost_unstarted >= 3:
            broken = WorkerLostError(
                f"faasmp workers for this pool died {self._lost_unstarted} times before "
                f"starting (last: {cause}); see the worker log of your compute backend"
            )
            self._broken = broken
            self._fail_all(broken)
            return
        if job is None or index is None:
            self._lease(1)
            return
        if self._retry((job, index), slot, cause):
            self._lease(1)
            return
        err = WorkerLostError(
            f"the faasmp worker {slot} running task {index} of this map/apply {cause}; "
            "the task did not finish (it may have run out of memory or been killed)"
            + (
                f"; it was tried {self._tries.get((job, index), 0) + 1} times"
                if self._retries_allowed
                else ""
            )
        )
        with self._lock:
            result = self._cache.get(job)
            arg_file = self._arg_files.pop((job, index), None)
        if arg_file is not None:  # no attempt is left to read it
            bulk.discard_payload(self._session.host_memory, arg_file)
        if result is not None:
            result._fail(err)
        self._lease(1)

    def _retry(self, key: tuple[int, int], slot: str, cause: str) -> bool:
        """Queue a lost task again if it has retries left (at-least-once)."""
        with self._lock:
            blob = self._blobs.get(key)
            tries = self._tries.get(key, 0)
            if blob is None or tries >= self._retries_allowed:
                return False
            self._tries[key] = tries + 1
        logger.warning(
            "faasmp: worker %s %s while running task %s of job %s; running it again (retry %d of %d)",
            slot,
            cause,
            key[1],
            key[0],
            tries + 1,
            self._retries_allowed,
        )
        self._queues.requeue(blob)
        return True

    def _on_done(self, msg: msgs.TaskDone) -> None:
        received = time.time()
        job, index, timing = msg.job, msg.index, msg.timing
        ok, value = self._decode(msg)
        with self._lock:
            meta = self._meta.pop((job, index), None)
            self._blobs.pop((job, index), None)
            self._tries.pop((job, index), None)
            arg_file = self._arg_files.pop((job, index), None)
            result = self._cache.get(job)
        if arg_file is not None:
            bulk.discard_payload(self._session.host_memory, arg_file)
        if timing is not None and timing.had_output:
            self._session.wait_output(f"{self._pool_id}:{job}:{index}")
        if meta is not None and timing is not None:  # no timing: the task never ran
            submitted, ser, uploaded = meta
            rec = TaskRecord(
                job_id=f"{self._pool_id}:{job}",
                task_id=f"{job}:{index}",
                kind="pool",
                worker=timing.slot,
                host=timing.slot.split(".")[0],
                submitted=submitted,
                uploaded=uploaded,
                started=timing.dequeued,
                run_start=timing.run_start,
                run_end=timing.run_end,
                received=received,
                serialize_s=ser,
                peak_rss=timing.peak_rss,
                cpu_s=timing.cpu_s,
                ok=ok,
                n_items=len(value) if ok and isinstance(value, list) else 1,
            )
            self._session.stats.emit(TaskFinished(rec))
        if result is not None:
            # A task's result is an acquire of the shared memory it wrote: the
            # handler pulled once for the batch this message came in.
            result._set(index, (ok, value))

    def _decode(self, msg: msgs.TaskDone) -> tuple[bool, Any]:
        """The task's (ok, value); a value this side cannot unpickle fails the task.

        As the stdlib's ``get()`` raises when the result cannot be unpickled
        (a class the client cannot import, a ``__setstate__`` that raises):
        the error names the task and the cause, and the pool goes on.
        """
        try:
            where = f"the result of task {msg.index} of job {msg.job} of pool {self._pool_id}"
            return msg.ok, loads_body(
                bulk.load_payload(self._session.host_memory, msg.value, where, remove=True)
            )
        except Exception as exc:  # noqa: BLE001 - any unpickling failure fails this one task
            what = "result" if msg.ok else "exception"
            err = ResultUnpicklingError(
                exc, f"the {what} of task {msg.index} of job {msg.job} of pool {self._pool_id}"
            )
            err.__cause__ = exc
            return False, err


def _handle_results(pool_ref: weakref.ref[Pool], session: Session, results_key: str) -> None:
    """The pool's result handler thread; holds the pool only weakly."""
    pool = pool_ref()
    if pool is not None and not pool._opened.is_set() and not _open_in_handler(pool):
        return
    del pool
    hb = session.config.heartbeat_interval
    last_check = time.monotonic()
    down_since = 0.0
    results = PoolResultsQueue(session.state, results_key)
    while True:
        pool = pool_ref()
        if pool is None or session.closed:
            return
        if pool._dismissed and not pool._workers and not pool._leases and not pool._cache:
            _cleanup_keys(pool)
            return
        del pool
        try:
            # A batch of the results there are, or block for the next one.
            blobs = results.take(hb)
        except Exception as exc:  # noqa: BLE001 - the backend went away
            if session.closed:
                return
            down_since = down_since or time.monotonic()
            _backend_failed(pool_ref, exc, time.monotonic() - down_since)
            time.sleep(0.2)
            continue
        down_since = 0.0
        pool = pool_ref()
        if pool is None:
            return
        if blobs:
            batch = []
            for blob in blobs:
                try:
                    batch.append(loads(blob, session.authkey))
                except Exception:  # noqa: BLE001 - a forged or foreign message is no result
                    logger.warning("faasmp pool: dropped an unauthenticated result message", exc_info=True)
            if any(isinstance(msg, msgs.TaskDone) for msg in batch):
                # A task's result is an acquire of the shared memory it wrote. Every
                # worker released before pushing its result, so one pull after the
                # pop sees the whole batch (a pull per result cost a round trip each).
                dsm.acquire()
            # Popped one by one: no handled result stays alive while this thread
            # blocks for the next message (the stdlib's handler drops them too;
            # CPython's test_release_task_refs).
            batch.reverse()
            while batch:
                pool._on_message(batch.pop())
        now = time.monotonic()
        if now - last_check >= hb:
            last_check = now
            try:
                _health_check(pool)
            except Exception as exc:  # noqa: BLE001 - the backend went away mid-check
                down_since = down_since or now
                _backend_failed(pool_ref, exc, now - down_since)


def _open_in_handler(pool: Pool) -> bool:
    """Open a pool made while its run was starting (see ``Pool._open``); False if that failed.

    The failure (the embedded server's error) breaks the pool: its first
    submit raises it.
    """
    try:
        pool._open()
    except Exception as exc:  # noqa: BLE001 - raised to the pool's user by its next call
        pool._broken = exc
        pool._dismissed = True  # no worker was leased, no wake-up message will come
        pool._fail_all(exc)
        return False
    return True


def _backend_failed(pool_ref: weakref.ref[Pool], exc: BaseException, down_for: float) -> None:
    """Fail the pool's outstanding results once Redis is gone for good (never hang on it).

    A lost run state fails them at once; a connection error only after it
    lasted 3 heartbeats (at least 6 s), so a short blip is survived.
    """
    from .backends.state import StateLostError  # noqa: PLC0415

    pool = pool_ref()
    if pool is None:
        return
    hb = pool._session.config.heartbeat_interval
    if not isinstance(exc, StateLostError) and down_for < max(3 * hb, 6.0):
        return
    if pool._broken is None:
        logger.error("faasmp pool: the state backend failed; failing its outstanding results: %s", exc)
        pool._broken = exc
    pool._fail_all(exc)


def _health_check(pool: Pool) -> None:
    """Refresh the pool's liveness and detect dead worker invocations."""
    session = pool._session
    if pool._state != TERMINATE:
        # Safety net for a killed client: every key of the pool expires
        # unless this thread keeps renewing it.
        pool._queues.renew(pool._ttl_ms, int(session.config.key_ttl * 1000))
    if not pool._cache:
        return
    with pool._lock:
        workers = dict(pool._workers)
    # Workers share hosts (one invocation forks many): ask once per host.
    alive = {host: session.host_alive(host) for host in set(workers.values())}
    dead = [slot for slot, host in workers.items() if not alive[host]]
    for slot in dead:
        pool._on_message(msgs.WorkerLost(slot, None, None, "was lost with its function invocation"))
    if dead:
        pool._fail_all(
            WorkerLostError(
                f"faasmp workers {dead} were lost with their function invocation; their tasks did not finish"
            )
        )
    try:
        session.check_start_error()
    except Exception as exc:  # noqa: BLE001 - fail the work instead of hanging
        if not workers:
            pool._fail_all(exc)


def _cleanup_keys(pool: Pool) -> None:
    session = pool._session
    if session.closed:
        return
    try:
        session.state.delete(pool._tasks_key, pool._results_key, pool._funcs_key, pool._alive_key)
    except Exception:  # noqa: BLE001
        logger.debug("faasmp pool cleanup", exc_info=True)


def _chunks(iterable: Iterable[Any], size: int) -> Iterator[tuple[Any, ...]]:
    it = iter(iterable)
    while True:
        chunk = tuple(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk


def _log_level() -> int:
    return logging.getLogger().getEffectiveLevel()
