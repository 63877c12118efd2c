"""faasmp: Python's multiprocessing API on serverless functions.

``import faasmp as multiprocessing`` and an ordinary multiprocessing program
runs its processes and pool workers as functions (Lithops; the ``localhost``
backend by default) with all shared state in Redis (an embedded private
server by default, or ``FAASMP_REDIS_URL``).

The top-level names are bound to the default context, as in CPython.
"""

from __future__ import annotations

import importlib as _importlib
import sys as _sys
from multiprocessing import BufferTooShort, ProcessError, TimeoutError
from typing import TYPE_CHECKING, Any

# Eager (it imports only the stdlib): the function ``patch`` must stay bound
# over the submodule of the same name, which importing it later would rebind.
from .patch import is_patched, patch, patched, unpatch

# The names below are resolved on first use (module ``__getattr__``): every
# cold Lithops invocation imports ``faasmp.runtime.worker``, hence this
# package first, and a worker needs none of the client's API to take its
# first task (importing it eagerly cost each worker ~10 ms, see
# docs/performance.md).  Type checkers see them as ordinary imports.
if TYPE_CHECKING:
    from . import stats
    from .config import Config
    from .context import FaasContext, default_context
    from .process import Process, active_children, current_process, parent_process
    from .runtime.call import AuthenticationError, PicklingFailed, RemoteError, RemoteTraceback
    from .runtime.session import WorkerStartError

__version__ = "0.1.0"

#: Name -> (module, attribute; None for the module itself), imported on first use.
_LAZY: dict[str, tuple[str, str | None]] = {
    "stats": (".stats", None),
    "Config": (".config", "Config"),
    "FaasContext": (".context", "FaasContext"),
    "default_context": (".context", "default_context"),
    "Process": (".process", "Process"),
    "active_children": (".process", "active_children"),
    "current_process": (".process", "current_process"),
    "parent_process": (".process", "parent_process"),
    "AuthenticationError": (".runtime.call", "AuthenticationError"),
    "PicklingFailed": (".runtime.call", "PicklingFailed"),
    "RemoteError": (".runtime.call", "RemoteError"),
    "RemoteTraceback": (".runtime.call", "RemoteTraceback"),
    "WorkerStartError": (".runtime.session", "WorkerStartError"),
}

#: Top-level names bound to the default context's methods, as in CPython.
_CONTEXT_METHODS = frozenset(
    {
        "Pool",
        "Pipe",
        "Queue",
        "JoinableQueue",
        "SimpleQueue",
        "Lock",
        "RLock",
        "Condition",
        "Semaphore",
        "BoundedSemaphore",
        "Event",
        "Barrier",
        "RawValue",
        "RawArray",
        "Value",
        "Array",
        "Manager",
        "cpu_count",
        "get_context",
        "get_start_method",
        "set_start_method",
        "get_all_start_methods",
        "set_executable",
        "set_forkserver_preload",
        "freeze_support",
        "allow_connection_pickling",
        "get_logger",
        "log_to_stderr",
        "configure",
        "shutdown",
        "start_warm_pool",
        "stop_warm_pool",
        "warm_pool_status",
    }
)


def __getattr__(name: str) -> Any:
    """Import a public name on its first use (then it is an ordinary module global)."""
    if name in _CONTEXT_METHODS:
        from .context import default_context  # noqa: PLC0415 - lazy, see above

        value = getattr(default_context(), name)
    elif name in _LAZY:
        module, attr = _LAZY[name]
        found = _importlib.import_module(module, __name__)
        value = found if attr is None else getattr(found, attr)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if "joblib" in _sys.modules:  # register the "faasmp" joblib backend for free
    from . import joblib as _joblib_backend  # noqa: F401

__all__ = [
    "Array",
    "AuthenticationError",
    "Barrier",
    "BoundedSemaphore",
    "BufferTooShort",
    "Condition",
    "Config",
    "Event",
    "FaasContext",
    "JoinableQueue",
    "Lock",
    "Manager",
    "PicklingFailed",
    "Pipe",
    "Pool",
    "Process",
    "ProcessError",
    "Queue",
    "RLock",
    "RawArray",
    "RawValue",
    "RemoteError",
    "RemoteTraceback",
    "Semaphore",
    "SimpleQueue",
    "TimeoutError",
    "Value",
    "WorkerStartError",
    "active_children",
    "allow_connection_pickling",
    "configure",
    "cpu_count",
    "current_process",
    "freeze_support",
    "get_all_start_methods",
    "get_context",
    "get_logger",
    "get_start_method",
    "is_patched",
    "log_to_stderr",
    "parent_process",
    "patch",
    "patched",
    "set_executable",
    "set_forkserver_preload",
    "set_start_method",
    "shutdown",
    "start_warm_pool",
    "stats",
    "stop_warm_pool",
    "unpatch",
    "warm_pool_status",
]

if TYPE_CHECKING:
    _ctx = default_context()
    Pool = _ctx.Pool
    Pipe = _ctx.Pipe
    Queue = _ctx.Queue
    JoinableQueue = _ctx.JoinableQueue
    SimpleQueue = _ctx.SimpleQueue
    Lock = _ctx.Lock
    RLock = _ctx.RLock
    Condition = _ctx.Condition
    Semaphore = _ctx.Semaphore
    BoundedSemaphore = _ctx.BoundedSemaphore
    Event = _ctx.Event
    Barrier = _ctx.Barrier
    RawValue = _ctx.RawValue
    RawArray = _ctx.RawArray
    Value = _ctx.Value
    Array = _ctx.Array
    Manager = _ctx.Manager
    cpu_count = _ctx.cpu_count
    get_context = _ctx.get_context
    get_start_method = _ctx.get_start_method
    set_start_method = _ctx.set_start_method
    get_all_start_methods = _ctx.get_all_start_methods
    set_executable = _ctx.set_executable
    set_forkserver_preload = _ctx.set_forkserver_preload
    freeze_support = _ctx.freeze_support
    allow_connection_pickling = _ctx.allow_connection_pickling
    get_logger = _ctx.get_logger
    log_to_stderr = _ctx.log_to_stderr
    configure = _ctx.configure
    shutdown = _ctx.shutdown
    start_warm_pool = _ctx.start_warm_pool
    stop_warm_pool = _ctx.stop_warm_pool
    warm_pool_status = _ctx.warm_pool_status
