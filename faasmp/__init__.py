"""faasmp: Python's multiprocessing API on serverless functions.

``import faasmp as multiprocessing`` and an ordinary multiprocessing program
runs its processes and pool workers as functions (Lithops; the ``localhost``
backend by default) with all shared state in Redis (an embedded private
server by default, or ``FAASMP_REDIS_URL``).

The top-level names are bound to the default context, as in CPython.
"""

from __future__ import annotations

import sys as _sys
from multiprocessing import BufferTooShort, ProcessError, TimeoutError

from . import stats
from .config import Config
from .context import FaasContext, default_context
from .patch import is_patched, patch, patched, unpatch
from .process import Process, active_children, current_process, parent_process
from .runtime.call import AuthenticationError, PicklingFailed, RemoteError, RemoteTraceback
from .runtime.session import WorkerStartError

__version__ = "0.1.0"

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
