"""Contexts: the multiprocessing API bound to one configuration and one run.

As in CPython, the top-level functions of :mod:`faasmp` are bound methods of
a default context, and :func:`get_context` returns context objects with the
same API.  A context owns a frozen :class:`~faasmp.config.Config` and, from
first use, a :class:`~faasmp.runtime.session.Session` (the embedded server or
external Redis, the Lithops executor and the warm pool).

Every start method name (``fork``, ``spawn``, ``forkserver``, ``faas``) gives
a faasmp context: the code runs on serverless workers whichever the program
asked for, with fork's semantics where they can differ (objects reach the
process by pickling; ``__main__`` functions by value).
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from . import config as config_mod
from . import process
from .advisor import GranularityAdvisor
from .stats import StatsCollector

START_METHODS = ("faas", "fork", "spawn", "forkserver")

_CONTEXTS: weakref.WeakValueDictionary[str, FaasContext] = weakref.WeakValueDictionary()


class FaasContext:
    """The multiprocessing API on serverless functions, for one configuration."""

    def __init__(
        self, config: config_mod.Config | None = None, *, start_method: str = "faas", **settings: Any
    ) -> None:
        self._config = config
        self._settings = settings
        self._start_method = start_method
        self._lock = threading.RLock()
        self._session: Any = None
        self._explicit_method: str | None = None
        self.stats = StatsCollector()
        self._advisor = GranularityAdvisor(self.stats)
        self._output_handler: Callable[[tuple[Any, ...]], None] | None = None
        self._scopes: list[WorkScope] = []
        self.Process = type("Process", (process.BaseProcess,), {"_ctx": self, "__module__": __name__})

    # -- configuration --------------------------------------------------------
    @property
    def config(self) -> config_mod.Config:
        """The context's settings (loaded from file and environment on first use)."""
        with self._lock:
            if self._config is None:
                self._config = config_mod.load(**self._settings)
            return self._config

    def configure(self, **settings: Any) -> None:
        """Change settings; only before the context has started its run."""
        with self._lock:
            if self._session is not None and not self._session.closed:
                raise RuntimeError("faasmp is already running with this configuration; call shutdown() first")
            self._config = self.config.replace(**settings) if self._config else None
            if self._config is None:
                self._settings.update(settings)

    @property
    def session(self) -> Any:
        """The running session, started on first use (blocks while it starts)."""
        with self._lock:
            if self._session is None or self._session.closed:
                from .runtime.session import ClientSession  # noqa: PLC0415

                self._session = ClientSession(self.config, secrets.token_bytes(32), self.stats)
                if self._output_handler is not None:
                    self._session.output_sink = self._output_handler
                _CONTEXTS[self._session.run_id] = self
            return self._session

    # -- output and cancellation ---------------------------------------------
    @property
    def output_handler(self) -> Callable[[tuple[Any, ...]], None] | None:
        """Where remote output goes; ``None`` = this process' sys.stdout/stderr and logging.

        The handler receives the messages described in :mod:`faasmp.runtime.output`
        (``("w", task_id, fd, text)``, ``("log", task_id, record_dict)``) on
        faasmp's output thread; :func:`faasmp.runtime.output.replay` writes one
        the default way.  Jupyter front ends use this to route output to a cell.
        """
        return self._output_handler

    @output_handler.setter
    def output_handler(self, handler: Callable[[tuple[Any, ...]], None] | None) -> None:
        from .runtime import output  # noqa: PLC0415

        if handler is not None and not callable(handler):
            raise TypeError(f"output_handler must be callable or None, got {handler!r}")
        self._output_handler = handler
        if self._session is not None and not self._session.closed:
            self._session.output_sink = handler or output.replay

    def work_scope(self) -> WorkScope:
        """A scope recording the Pools and Processes started inside it.

        ``with ctx.work_scope() as scope: ...``; ``scope.cancel()`` (e.g. on
        KeyboardInterrupt) terminates those pools and kills those processes,
        leaving the warm pool usable.
        """
        return WorkScope(self)

    def _register_work(self, obj: Any) -> None:
        for scope in list(self._scopes):
            scope._add(obj)

    @property
    def running(self) -> bool:
        return self._session is not None and not self._session.closed

    def shutdown(self) -> None:
        """Terminate daemonic children, join the others, stop all workers and Redis."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None and not session.closed:
            process._exit_children()
            session.shutdown()

    def __reduce__(self) -> Any:
        return (_context_for_run, (self.session.run_id,))

    def __repr__(self) -> str:
        return f"<FaasContext {self._start_method} backend={self.config.backend!r}>"

    # -- warm pool ----------------------------------------------------------------
    def start_warm_pool(
        self, workers: int, *, wait: bool = True, timeout: float | None = None
    ) -> dict[str, Any]:
        """Size the warm pool to *workers* slots so later work pays no cold start.

        Grows by starting slots; shrinks by asking idle slots to leave (busy
        ones finish first).  With *wait*, blocks until *workers* slots are up
        (``start_timeout`` by default).  Returns :meth:`warm_pool_status`.
        """
        if not isinstance(workers, int) or isinstance(workers, bool):
            raise TypeError(f"workers must be an int, got {type(workers).__name__}")
        session = self.session
        session.prestart(workers)
        session.shrink(workers)
        if wait:
            session.wait_ready(workers, timeout or session.config.start_timeout)
        return self.warm_pool_status()

    def collect_stats(self) -> None:
        """Bring :attr:`stats` up to date now, not at the next heartbeat.

        Emits this process' IPC/sync counters and handles the workers'
        reports already sent (a joined Process has sent its last one).  A
        no-op when no run is active.
        """
        session = self._session
        if session is not None and not session.closed:
            session.collect_stats()

    def warm_pool_status(self) -> dict[str, Any]:
        """Hosts, workers, idle workers, queued calls and tasks run so far."""
        if not self.running:
            return {"backend": self.config.backend, "running": False, "workers": 0}
        status: dict[str, Any] = self.session.status()
        status["running"] = True
        return status

    def stop_warm_pool(self) -> None:
        """Stop every worker (and the embedded server); the next use starts afresh."""
        self.shutdown()

    # -- multiprocessing API -----------------------------------------------------
    def Pool(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
    ) -> Any:
        """A :class:`faasmp.pool.Pool` on this context."""
        from .pool import Pool  # noqa: PLC0415

        return Pool(processes, initializer, initargs, maxtasksperchild, context=self)

    # Shared state and IPC: factories pass ctx=self, like CPython's BaseContext.
    def Pipe(self, duplex: bool = True) -> Any:
        """Two connected :class:`faasmp.connection.Connection` objects."""
        from .connection import Pipe  # noqa: PLC0415

        return Pipe(duplex, ctx=self)

    def Queue(self, maxsize: int = 0) -> Any:
        from .queues import Queue  # noqa: PLC0415

        return Queue(maxsize, ctx=self)

    def JoinableQueue(self, maxsize: int = 0) -> Any:
        from .queues import JoinableQueue  # noqa: PLC0415

        return JoinableQueue(maxsize, ctx=self)

    def SimpleQueue(self) -> Any:
        from .queues import SimpleQueue  # noqa: PLC0415

        return SimpleQueue(ctx=self)

    def Lock(self) -> Any:
        from .synchronize import Lock  # noqa: PLC0415

        return Lock(ctx=self)

    def RLock(self) -> Any:
        from .synchronize import RLock  # noqa: PLC0415

        return RLock(ctx=self)

    def Condition(self, lock: Any = None) -> Any:
        from .synchronize import Condition  # noqa: PLC0415

        return Condition(lock, ctx=self)

    def Semaphore(self, value: int = 1) -> Any:
        from .synchronize import Semaphore  # noqa: PLC0415

        return Semaphore(value, ctx=self)

    def BoundedSemaphore(self, value: int = 1) -> Any:
        from .synchronize import BoundedSemaphore  # noqa: PLC0415

        return BoundedSemaphore(value, ctx=self)

    def Event(self) -> Any:
        from .synchronize import Event  # noqa: PLC0415

        return Event(ctx=self)

    def Barrier(
        self, parties: int, action: Callable[[], Any] | None = None, timeout: float | None = None
    ) -> Any:
        from .synchronize import Barrier  # noqa: PLC0415

        return Barrier(parties, action, timeout, ctx=self)

    def RawValue(self, typecode_or_type: Any, *args: Any) -> Any:
        from .sharedctypes import RawValue  # noqa: PLC0415

        return RawValue(typecode_or_type, *args, ctx=self)

    def RawArray(self, typecode_or_type: Any, size_or_initializer: Any) -> Any:
        from .sharedctypes import RawArray  # noqa: PLC0415

        return RawArray(typecode_or_type, size_or_initializer, ctx=self)

    def Value(self, typecode_or_type: Any, *args: Any, lock: Any = True) -> Any:
        from .sharedctypes import Value  # noqa: PLC0415

        return Value(typecode_or_type, *args, lock=lock, ctx=self)

    def Array(self, typecode_or_type: Any, size_or_initializer: Any, *, lock: Any = True) -> Any:
        from .sharedctypes import Array  # noqa: PLC0415

        return Array(typecode_or_type, size_or_initializer, lock=lock, ctx=self)

    def Manager(self) -> Any:
        """A started :class:`faasmp.managers.SyncManager` whose objects live in Redis."""
        from .managers import SyncManager  # noqa: PLC0415

        m = SyncManager(ctx=self)
        m.start()
        return m

    def cpu_count(self) -> int:
        """CPUs of this machine, as the stdlib (a Pool's default size)."""
        return os.cpu_count() or 1

    def current_process(self) -> process.BaseProcess:
        return process.current_process()

    def parent_process(self) -> Any:
        return process.parent_process()

    def active_children(self) -> list[process.BaseProcess]:
        return process.active_children()

    def get_context(self, method: str | None = None) -> FaasContext:
        """A context for start method *method* (all run on faasmp; see module doc)."""
        if method is None:
            return self
        if method not in START_METHODS:
            raise ValueError(f"cannot find context for {method!r}")
        if method == self._start_method:
            return self
        return _MethodContext(self, method)  # type: ignore[return-value]

    def get_start_method(self, allow_none: bool = False) -> str | None:
        if self._explicit_method is None and allow_none:
            return None
        return self._explicit_method or self._start_method

    def set_start_method(self, method: str | None, force: bool = False) -> None:
        if self._explicit_method is not None and not force:
            raise RuntimeError("context has already been set")
        if method is not None and method not in START_METHODS:
            raise ValueError(f"cannot find context for {method!r}")
        self._explicit_method = method

    def get_all_start_methods(self) -> list[str]:
        return list(START_METHODS)

    def set_executable(self, executable: str | bytes | os.PathLike[str]) -> None:
        """Record the interpreter child processes should run (the stdlib's spawn executable).

        Like the stdlib, this is accepted at any time (a ``str``, ``bytes`` or
        path) and stored (:meth:`get_executable`).  It only matters on the
        Lithops localhost backend: before the context starts its run, it also
        becomes the interpreter of localhost invocations; once running, the
        warm workers keep theirs.  On cloud backends the function's runtime
        decides the interpreter, so the setting has no effect there.
        """
        path = os.fsdecode(executable)
        self._executable = path
        if not self.running:
            lconf = dict(self.config.lithops_config)
            lconf["localhost"] = {**dict(lconf.get("localhost", {})), "runtime": path}
            self.configure(lithops_config=lconf)

    def get_executable(self) -> str:
        """The interpreter recorded by :meth:`set_executable` (default ``sys.executable``)."""
        return getattr(self, "_executable", None) or sys.executable

    def set_forkserver_preload(self, module_names: list[str]) -> None:
        """Accepted for compatibility: warm workers already import on first use."""
        if not all(isinstance(m, str) for m in module_names):
            raise TypeError("module_names must be a list of strings")

    def freeze_support(self) -> None:
        """Nothing to do: faasmp never re-executes the main module."""

    def allow_connection_pickling(self) -> None:
        """Nothing to do: faasmp objects always pickle."""

    def get_logger(self) -> Any:
        from multiprocessing import util  # noqa: PLC0415

        return util.get_logger()

    def log_to_stderr(self, level: int | None = None) -> Any:
        from multiprocessing import util  # noqa: PLC0415

        return util.log_to_stderr(level)

    @property
    def reducer(self) -> Any:
        from multiprocessing import reduction  # noqa: PLC0415

        return reduction


class WorkScope:
    """Remote work started in a block; see :meth:`FaasContext.work_scope`."""

    def __init__(self, ctx: FaasContext) -> None:
        self._ctx = ctx
        self._items: weakref.WeakSet[Any] = weakref.WeakSet()

    def _add(self, obj: Any) -> None:
        self._items.add(obj)

    @property
    def pools(self) -> list[Any]:
        from .pool import Pool  # noqa: PLC0415

        return [o for o in self._items if isinstance(o, Pool)]

    @property
    def processes(self) -> list[process.BaseProcess]:
        return [o for o in self._items if isinstance(o, process.BaseProcess)]

    def cancel(self) -> int:
        """Terminate the scope's pools and kill its live processes; returns how many."""
        n = 0
        for pool in self.pools:
            pool.terminate()
            n += 1
        for proc in self.processes:
            if proc._handle is not None and proc._handle.poll() is None:
                proc.kill()
                n += 1
        return n

    def __enter__(self) -> WorkScope:
        self._ctx._scopes.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx._scopes.remove(self)


class _MethodContext:
    """The same run under another start method's name (``get_context('spawn')``)."""

    def __init__(self, base: FaasContext, method: str) -> None:
        self._base = base
        self._start_method = method

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def get_start_method(self, allow_none: bool = False) -> str:
        return self._start_method

    def __reduce__(self) -> Any:
        return self._base.__reduce__()

    def __repr__(self) -> str:
        return f"<FaasContext {self._start_method} backend={self._base.config.backend!r}>"


def _context_for_run(run_id: str) -> FaasContext:
    """Unpickle a context reference: the context of that run in this process."""
    ctx = _CONTEXTS.get(run_id)
    if ctx is None and _default_context._session is not None and _default_context._session.run_id == run_id:
        ctx = _default_context
    if ctx is None:
        raise RuntimeError(f"this object belongs to faasmp run {run_id}, which is not active in this process")
    return ctx


def attach_remote(spec: Any, state: Any) -> None:
    """Inside a worker: bind the default context to the worker's run."""
    from .runtime.session import WorkerSession  # noqa: PLC0415

    session = WorkerSession(spec, state, _default_context.stats)
    with _default_context._lock:
        _default_context._session = session
        _default_context._config = session.config
    _CONTEXTS[spec.run_id] = _default_context


_default_context = FaasContext()


def default_context() -> FaasContext:
    """The default context: the one the top-level API (``faasmp.Pool``, ``faasmp.Manager``, ...) uses.

    Objects made without a ``ctx=`` belong to it.  Inside a worker it is
    bound to the run the worker serves (see :func:`attach_remote`).  Other
    modules reach it only through this function.
    """
    return _default_context
