"""Every message between the client, the hosts and the worker slots, as a typed record.

Each message is a frozen dataclass; receivers dispatch on its type with
``match`` instead of reading tuples by index or parsing strings.  Messages
travel signed, like every payload (:func:`faasmp.runtime.call.dumps`, checked
by :func:`~faasmp.runtime.call.loads` before anything is unpickled).

Where a message carries user data (a task's arguments, a task's result), the
data travels as its own pickle inside the message (``bytes``): the receiver
always gets the message itself (who, which task), and a value that fails to
unpickle on its side (a class it cannot import, a ``__setstate__`` that
raises) fails that one task with an error naming it, instead of the whole
message being dropped and the task waited for forever.

The hot messages (a Pool task and its result) reduce to their class and a
tuple of fields, so plain ones pickle with the C pickler as fast as the tuples
they replaced (see :func:`faasmp.runtime.call.dumps_plain`).

Lists and their messages:

===================  ===========================================  ====================
list (keys.py)       messages                                     written by
===================  ===========================================  ====================
pool tasks           :class:`PoolTask`, :data:`SENTINEL`          the Pool
pool results         :class:`WorkerStarted`, :class:`TaskDone`,   pool workers, hosts,
                     :class:`WorkerExited`, :class:`WorkerLost`,  the Pool
                     :class:`InitFailed`, :data:`DISMISSED`
host control         :class:`SpawnSlots`, :class:`KillBusy`,      the client, a Pool
                     :data:`STOP_HOST`
process control      :class:`SignalProcess`, :data:`CHILD_EXITED` the client, the slot
run events           :class:`HostRegistered`,                     hosts, workers
                     :class:`~faasmp.stats.MetricsReport`
===================  ===========================================  ====================

A Pool's worker lease (the payload of a ``POOL_WORKER`` RemoteCall on the
work queue) is a :class:`PoolLease`.  The slot record (what a slot is doing,
read by its host when the slot dies) holds :class:`RunningProcess` or
:class:`ServingPool`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from ..stats import MetricsReport

__all__ = [
    "CHILD_EXITED",
    "DISMISSED",
    "SENTINEL",
    "STOP_HOST",
    "ChildExited",
    "Dismissed",
    "HostRegistered",
    "InitFailed",
    "KillBusy",
    "MetricsReport",
    "PoolLease",
    "PoolTask",
    "RunningProcess",
    "Sentinel",
    "ServingPool",
    "SignalProcess",
    "SlotRecord",
    "SpawnSlots",
    "StopHost",
    "TaskDone",
    "TaskMode",
    "TaskTiming",
    "WorkerExited",
    "WorkerLost",
]


# --- pool leases (Pool -> a slot, as the payload of a POOL_WORKER call) -------


@dataclasses.dataclass(frozen=True, slots=True)
class PoolLease:
    """What a slot needs to serve a Pool as one of its workers."""

    pool_id: str
    #: The signed pickle of ``(initializer, initargs)``, or None.
    initializer: bytes | None
    maxtasksperchild: int | None
    #: The worker's ``current_process()._identity`` and name, as the stdlib's.
    worker_index: int
    worker_name: str


# --- pool tasks (Pool -> pool workers) ----------------------------------------


class TaskMode(enum.Enum):
    """How a pool worker calls the task's function on its chunk."""

    #: ``fn(*args, **kwds)``; the chunk is ``(args, kwds)``.
    APPLY = "apply"
    #: ``[fn(x) for x in chunk]``.
    MAP = "map"
    #: ``[fn(*x) for x in chunk]``.
    STARMAP = "starmap"


@dataclasses.dataclass(frozen=True, slots=True)
class PoolTask:
    """One chunk of a Pool job for a pool worker.

    *chunk* is the pickle of the chunk (``(args, kwds)`` for APPLY), kept
    apart so a worker that cannot unpickle it still knows which task failed.
    """

    job: int
    index: int
    fn_key: bytes
    mode: TaskMode
    chunk: bytes

    def __reduce__(self) -> tuple[Any, ...]:
        # Class + field tuple: as compact and fast as the tuple this replaced
        # (the mode as its value, so the C pickler needs no enum reduction).
        return (_pool_task, (self.job, self.index, self.fn_key, self.mode.value, self.chunk))


def _pool_task(job: int, index: int, fn_key: bytes, mode: str, chunk: bytes) -> PoolTask:
    return PoolTask(job, index, fn_key, _MODES[mode], chunk)  # a dict look-up: TaskMode(mode) costs ~0.5 us


_MODES = {mode.value: mode for mode in TaskMode}


@dataclasses.dataclass(frozen=True, slots=True)
class Sentinel:
    """The pool worker leaves the pool (the stdlib's ``None`` on the task queue)."""


#: The one :class:`Sentinel`.
SENTINEL = Sentinel()


# --- pool results (pool workers and hosts -> the Pool's result handler) ------


@dataclasses.dataclass(frozen=True, slots=True)
class TaskTiming:
    """When and where a task ran (worker times already on the client's clock)."""

    dequeued: float
    run_start: float
    run_end: float
    peak_rss: int
    cpu_s: float
    slot: str
    had_output: bool

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            TaskTiming,
            (
                self.dequeued,
                self.run_start,
                self.run_end,
                self.peak_rss,
                self.cpu_s,
                self.slot,
                self.had_output,
            ),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class TaskDone:
    """A task finished: *ok* with its value, or not with its ``ExceptionInfo``.

    *value* is the pickle of the value (or of the ``ExceptionInfo``), kept
    apart from the message: see the module doc.  *timing* is None when the
    task never ran (its function could not be loaded).
    """

    job: int
    index: int
    ok: bool
    value: bytes
    timing: TaskTiming | None

    def __reduce__(self) -> tuple[Any, ...]:
        # One flat call rebuilds the message and its timing (one global, one call).
        t = self.timing
        if t is None:
            return (TaskDone, (self.job, self.index, self.ok, self.value, None))
        fields = (t.dequeued, t.run_start, t.run_end, t.peak_rss, t.cpu_s, t.slot, t.had_output)
        return (_task_done, (self.job, self.index, self.ok, self.value, *fields))


def _task_done(job: int, index: int, ok: bool, value: bytes, *timing: Any) -> TaskDone:
    return TaskDone(job, index, ok, value, TaskTiming(*timing))


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerStarted:
    """A slot took the Pool's lease *lease_id* and serves the pool from now on."""

    slot: str
    host: str
    pid: int
    lease_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerExited:
    """A pool worker left the pool normally; *reason* says why."""

    slot: str
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerLost:
    """A slot serving the pool died (reported by its host); *job*/*index* is its task, if any."""

    slot: str
    job: int | None
    index: int | None
    cause: str


@dataclasses.dataclass(frozen=True, slots=True)
class InitFailed:
    """The Pool's initializer raised in *slot*; *error* is its ``ExceptionInfo``."""

    slot: str
    error: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Dismissed:
    """Pushed by the Pool after every worker's sentinel: its handler may leave once they did."""


#: The one :class:`Dismissed`.
DISMISSED = Dismissed()


# --- host control (client and Pools -> a host) --------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SpawnSlots:
    """Fork *n* more slots (the client reserved them in the starting count)."""

    n: int


@dataclasses.dataclass(frozen=True, slots=True)
class KillBusy:
    """Kill *slot* if it is running a task of *pool_id* (``Pool.terminate``)."""

    slot: str
    pool_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class StopHost:
    """The client shuts down: end every slot and what it runs."""


#: The one :class:`StopHost`.
STOP_HOST = StopHost()


# --- process control (client and slot -> the slot running a Process) ---------


@dataclasses.dataclass(frozen=True, slots=True)
class SignalProcess:
    """Deliver signal *signum* to the running process (``terminate``/``kill``)."""

    signum: int


@dataclasses.dataclass(frozen=True, slots=True)
class ChildExited:
    """The slot's reaper saw the process' forked child end (wakes the slot's control loop)."""


#: The one :class:`ChildExited`.
CHILD_EXITED = ChildExited()


# --- run events (hosts -> client monitor) ------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class HostRegistered:
    """Host *host_id* started: invoked at *invoked*, running at *started* (client clock)."""

    host_id: str
    invoked: float
    started: float


# --- slot records (slot -> its host, through shared memory) -----------------


@dataclasses.dataclass(frozen=True, slots=True)
class RunningProcess:
    """The slot runs Process *proc_id*."""

    proc_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class ServingPool:
    """The slot serves *pool_id*; *job*/*index* is its task (None between tasks).

    *delivering*: the task is done and its result is on its way; the host
    still reports the task if the slot dies, but ``KillBusy`` spares it.
    """

    pool_id: str
    job: int | None = None
    index: int | None = None
    delivering: bool = False

    def __reduce__(self) -> tuple[Any, ...]:
        # Written to the slot record three times per task: keep it cheap.
        return (ServingPool, (self.pool_id, self.job, self.index, self.delivering))

    @property
    def busy(self) -> bool:
        """Running a task (not between tasks, not delivering a result)."""
        return self.job is not None and not self.delivering


SlotRecord = RunningProcess | ServingPool
