"""Every message between the client, the hosts and the worker slots, as a typed record.

Each message is a frozen record (:class:`_Record`, a slotted class); receivers dispatch on its type with
``match`` instead of reading tuples by index or parsing strings.  Messages
travel signed, like every payload (:func:`faasmp.runtime.call.dumps`, checked
by :func:`~faasmp.runtime.call.loads` before anything is unpickled).

Where a message carries user data (a task's arguments, a task's result), the
data travels as its own pickle inside the message (``bytes``): the receiver
always gets the message itself (who, which task), and a value that fails to
unpickle on its side (a class it cannot import, a ``__setstate__`` that
raises) fails that one task with an error naming it, instead of the whole
message being dropped and the task waited for forever.  A large one (its
pickle in several parts: :class:`faasmp.runtime.call.PickleParts`) travels
after the record's own pickle in a *split* message, and arrives as a
memoryview of the received body (the record's ``payload_field`` names it:
:func:`faasmp.runtime.call.dumps_payload_message`).

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


# --- the record base -----------------------------------------------------------

_set = object.__setattr__


class _Record:
    """A frozen slotted record, as ``@dataclass(frozen=True, slots=True)`` but cheap to define.

    Every message class is defined in every cold worker before its first task.
    A frozen slotted dataclass costs ~0.45 ms to define (it compiles about seven
    generated methods and builds the class twice): the 18 messages cost ~8 ms
    of each worker's start.  These share one set of generic methods instead, so
    defining one costs ~0.01 ms; each subclass names its fields in
    ``__slots__`` (unsorted: the order of its ``__init__``, its ``repr``, its equality and
    its pickle) and writes its own ``__init__`` (as fast as the dataclass' one).
    Equality, hashing and ``repr`` are the dataclass ones: same class and equal
    fields; ``Name(field=value, ...)``.
    """

    __slots__: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Positional ``case Name(a, b)`` patterns, as a dataclass' (set so: mypy forbids assigning it).
        type.__setattr__(cls, "__match_args__", cls.__slots__)

    def _fields(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self.__slots__])

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r} of a {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r} of a {type(self).__name__}")

    def __repr__(self) -> str:
        fields = ", ".join([f"{name}={getattr(self, name)!r}" for name in self.__slots__])
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._fields() == other._fields()  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._fields())

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._fields())


# --- pool leases (Pool -> a slot, as the payload of a POOL_WORKER call) -------


class PoolLease(_Record):
    """What a slot needs to serve a Pool as one of its workers."""

    __slots__ = ("pool_id", "initializer", "maxtasksperchild", "worker_index", "worker_name")  # noqa: RUF023 - field order

    pool_id: str
    #: The signed pickle of ``(initializer, initargs)``, or None.
    initializer: bytes | None
    maxtasksperchild: int | None
    #: The worker's ``current_process()._identity`` and name, as the stdlib's.
    worker_index: int
    worker_name: str

    def __init__(
        self,
        pool_id: str,
        initializer: bytes | None,
        maxtasksperchild: int | None,
        worker_index: int,
        worker_name: str,
    ) -> None:
        _set(self, "pool_id", pool_id)
        _set(self, "initializer", initializer)
        _set(self, "maxtasksperchild", maxtasksperchild)
        _set(self, "worker_index", worker_index)
        _set(self, "worker_name", worker_name)


# --- pool tasks (Pool -> pool workers) ----------------------------------------


class TaskMode(enum.Enum):
    """How a pool worker calls the task's function on its chunk."""

    #: ``fn(*args, **kwds)``; the chunk is ``(args, kwds)``.
    APPLY = "apply"
    #: ``[fn(x) for x in chunk]``.
    MAP = "map"
    #: ``[fn(*x) for x in chunk]``.
    STARMAP = "starmap"


class PoolTask(_Record):
    """One chunk of a Pool job for a pool worker.

    *chunk* is the pickle of the chunk (``(args, kwds)`` for APPLY), kept
    apart so a worker that cannot unpickle it still knows which task failed.
    """

    __slots__ = ("job", "index", "fn_key", "mode", "chunk")  # noqa: RUF023 - field order
    #: The field a split message carries after the record (see the module doc).
    payload_field = "chunk"

    job: int
    index: int
    fn_key: bytes
    mode: TaskMode
    chunk: bytes | memoryview

    def __init__(
        self, job: int, index: int, fn_key: bytes, mode: TaskMode, chunk: bytes | memoryview
    ) -> None:
        _set(self, "job", job)
        _set(self, "index", index)
        _set(self, "fn_key", fn_key)
        _set(self, "mode", mode)
        _set(self, "chunk", chunk)

    def __reduce__(self) -> tuple[Any, ...]:
        # Class + field tuple: as compact and fast as the tuple this replaced
        # (the mode as its value, so the C pickler needs no enum reduction).
        return (_pool_task, (self.job, self.index, self.fn_key, self.mode.value, self.chunk))


def _pool_task(job: int, index: int, fn_key: bytes, mode: str, chunk: bytes) -> PoolTask:
    return PoolTask(job, index, fn_key, _MODES[mode], chunk)  # a dict look-up: TaskMode(mode) costs ~0.5 us


_MODES = {mode.value: mode for mode in TaskMode}


class Sentinel(_Record):
    """The pool worker leaves the pool (the stdlib's ``None`` on the task queue)."""

    __slots__ = ()


#: The one :class:`Sentinel`.
SENTINEL = Sentinel()


# --- pool results (pool workers and hosts -> the Pool's result handler) ------


class TaskTiming(_Record):
    """When and where a task ran (worker times already on the client's clock)."""

    __slots__ = ("dequeued", "run_start", "run_end", "peak_rss", "cpu_s", "slot", "had_output")  # noqa: RUF023 - field order

    dequeued: float
    run_start: float
    run_end: float
    peak_rss: int
    cpu_s: float
    slot: str
    had_output: bool

    def __init__(
        self,
        dequeued: float,
        run_start: float,
        run_end: float,
        peak_rss: int,
        cpu_s: float,
        slot: str,
        had_output: bool,
    ) -> None:
        _set(self, "dequeued", dequeued)
        _set(self, "run_start", run_start)
        _set(self, "run_end", run_end)
        _set(self, "peak_rss", peak_rss)
        _set(self, "cpu_s", cpu_s)
        _set(self, "slot", slot)
        _set(self, "had_output", had_output)

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


class TaskDone(_Record):
    """A task finished: *ok* with its value, or not with its ``ExceptionInfo``.

    *value* is the pickle of the value (or of the ``ExceptionInfo``), kept
    apart from the message: see the module doc.  *timing* is None when the
    task never ran (its function could not be loaded).
    """

    __slots__ = ("job", "index", "ok", "value", "timing")  # noqa: RUF023 - field order
    #: The field a split message carries after the record (see the module doc).
    payload_field = "value"

    job: int
    index: int
    ok: bool
    value: bytes | memoryview
    timing: TaskTiming | None

    def __init__(
        self, job: int, index: int, ok: bool, value: bytes | memoryview, timing: TaskTiming | None
    ) -> None:
        _set(self, "job", job)
        _set(self, "index", index)
        _set(self, "ok", ok)
        _set(self, "value", value)
        _set(self, "timing", timing)

    def __reduce__(self) -> tuple[Any, ...]:
        # One flat call rebuilds the message and its timing (one global, one call).
        t = self.timing
        if t is None:
            return (TaskDone, (self.job, self.index, self.ok, self.value, None))
        fields = (t.dequeued, t.run_start, t.run_end, t.peak_rss, t.cpu_s, t.slot, t.had_output)
        return (_task_done, (self.job, self.index, self.ok, self.value, *fields))


def _task_done(job: int, index: int, ok: bool, value: bytes, *timing: Any) -> TaskDone:
    return TaskDone(job, index, ok, value, TaskTiming(*timing))


class WorkerStarted(_Record):
    """A slot took the Pool's lease *lease_id* and serves the pool from now on."""

    __slots__ = ("slot", "host", "pid", "lease_id")  # noqa: RUF023 - field order

    slot: str
    host: str
    pid: int
    lease_id: str

    def __init__(self, slot: str, host: str, pid: int, lease_id: str) -> None:
        _set(self, "slot", slot)
        _set(self, "host", host)
        _set(self, "pid", pid)
        _set(self, "lease_id", lease_id)


class WorkerExited(_Record):
    """A pool worker left the pool normally; *reason* says why."""

    __slots__ = ("slot", "reason")  # noqa: RUF023 - field order

    slot: str
    reason: str

    def __init__(self, slot: str, reason: str) -> None:
        _set(self, "slot", slot)
        _set(self, "reason", reason)


class WorkerLost(_Record):
    """A slot serving the pool died (reported by its host); *job*/*index* is its task, if any."""

    __slots__ = ("slot", "job", "index", "cause")  # noqa: RUF023 - field order

    slot: str
    job: int | None
    index: int | None
    cause: str

    def __init__(self, slot: str, job: int | None, index: int | None, cause: str) -> None:
        _set(self, "slot", slot)
        _set(self, "job", job)
        _set(self, "index", index)
        _set(self, "cause", cause)


class InitFailed(_Record):
    """The Pool's initializer raised in *slot*; *error* is its ``ExceptionInfo``."""

    __slots__ = ("slot", "error")  # noqa: RUF023 - field order

    slot: str
    error: Any

    def __init__(self, slot: str, error: Any) -> None:
        _set(self, "slot", slot)
        _set(self, "error", error)


class Dismissed(_Record):
    """Pushed by the Pool after every worker's sentinel: its handler may leave once they did."""

    __slots__ = ()


#: The one :class:`Dismissed`.
DISMISSED = Dismissed()


# --- host control (client and Pools -> a host) --------------------------------


class SpawnSlots(_Record):
    """Fork *n* more slots (the client reserved them in the starting count)."""

    __slots__ = ("n",)

    n: int

    def __init__(self, n: int) -> None:
        _set(self, "n", n)


class KillBusy(_Record):
    """Kill *slot* if it is running a task of *pool_id* (``Pool.terminate``)."""

    __slots__ = ("slot", "pool_id")  # noqa: RUF023 - field order

    slot: str
    pool_id: str

    def __init__(self, slot: str, pool_id: str) -> None:
        _set(self, "slot", slot)
        _set(self, "pool_id", pool_id)


class StopHost(_Record):
    """The client shuts down: end every slot and what it runs."""

    __slots__ = ()


#: The one :class:`StopHost`.
STOP_HOST = StopHost()


# --- process control (client and slot -> the slot running a Process) ---------


class SignalProcess(_Record):
    """Deliver signal *signum* to the running process (``terminate``/``kill``)."""

    __slots__ = ("signum",)

    signum: int

    def __init__(self, signum: int) -> None:
        _set(self, "signum", signum)


class ChildExited(_Record):
    """The slot's reaper saw the process' forked child end (wakes the slot's control loop)."""

    __slots__ = ()


#: The one :class:`ChildExited`.
CHILD_EXITED = ChildExited()


# --- run events (hosts -> client monitor) ------------------------------------


class HostRegistered(_Record):
    """Host *host_id* started: invoked at *invoked*, running at *started* (client clock)."""

    __slots__ = ("host_id", "invoked", "started")

    host_id: str
    invoked: float
    started: float

    def __init__(self, host_id: str, invoked: float, started: float) -> None:
        _set(self, "host_id", host_id)
        _set(self, "invoked", invoked)
        _set(self, "started", started)


# --- slot records (slot -> its host, through shared memory) -----------------


class RunningProcess(_Record):
    """The slot runs Process *proc_id*."""

    __slots__ = ("proc_id",)

    proc_id: str

    def __init__(self, proc_id: str) -> None:
        _set(self, "proc_id", proc_id)


class ServingPool(_Record):
    """The slot serves *pool_id*; *job*/*index* is its task (None between tasks).

    *delivering*: the task is done and its result is on its way; the host
    still reports the task if the slot dies, but ``KillBusy`` spares it.
    """

    __slots__ = ("pool_id", "job", "index", "delivering")  # noqa: RUF023 - field order

    pool_id: str
    job: int | None
    index: int | None
    delivering: bool

    def __init__(
        self, pool_id: str, job: int | None = None, index: int | None = None, delivering: bool = False
    ) -> None:
        _set(self, "pool_id", pool_id)
        _set(self, "job", job)
        _set(self, "index", index)
        _set(self, "delivering", delivering)

    def __reduce__(self) -> tuple[Any, ...]:
        # Written to the slot record three times per task: keep it cheap.
        return (ServingPool, (self.pool_id, self.job, self.index, self.delivering))

    @property
    def busy(self) -> bool:
        """Running a task (not between tasks, not delivering a result)."""
        return self.job is not None and not self.delivering


SlotRecord = RunningProcess | ServingPool
