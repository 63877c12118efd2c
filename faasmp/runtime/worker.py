"""The one entry point that runs remotely: :func:`host_main`.

A Lithops invocation runs ``host_main(spec)``, which makes that invocation a
*host* of warm worker *slots*:

* the host forks ``spec.slots`` slot processes and supervises them: a slot that
  dies is reported (its task fails with a clear error, never a hang) and
  replaced; the host keeps a heartbeat key alive and takes control messages
  (``spawn N`` to grow, ``kill PID`` to end a slot a Pool terminated);
* each slot pulls :class:`RemoteCall` items from the run's work queue until it
  has been idle for ``idle_timeout`` seconds.  A PROCESS call runs a Process
  object in a forked child (so exit codes, ``terminate`` and ``kill`` behave as
  in the stdlib); a POOL_WORKER call makes the slot a worker of one Pool until
  the Pool sends its sentinel.

One invocation hosting several slots turns N interpreter starts into one on the
localhost backend and uses every vCPU of a large cloud function.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import mmap
import os
import pickle
import resource
import signal
import struct
import sys
import threading
import time
import traceback
from typing import Any

from ..backends.state import LITHOPS_WORKER_ENV

if LITHOPS_WORKER_ENV in os.environ:
    # In a Lithops worker (its job process, forked from Lithops' runner): the
    # objects made so far (Lithops, numpy, faasmp's modules) live as long as
    # the process.  Frozen, the cyclic collector no longer walks them: a full
    # collection that fell inside this import walked the whole inherited heap
    # (15 ms, touching every page the fork shares copy-on-write), and the
    # slots forked from here do not walk it again in each of their own.
    gc.freeze()

from ..backends.host_memory import HostIdentity  # (after the freeze)
from ..backends.redis.hosts import WarmPool
from ..backends.redis.pool import PoolWorkerQueue
from ..backends.redis.processes import ProcessRecords
from ..backends.state import CONNECTION_ERRORS, StateBackend, open_state
from . import bulk, dsm, main_module, metrics
from . import protocol as msgs
from .call import (
    AuthenticationError,
    CallKind,
    ExceptionInfo,
    RemoteCall,
    dumps,
    dumps_message,
    loads,
    pickle_value,
    pickle_value_parts,
    share_globals,
)
from .keys import Keys
from .output import end_of_output
from .pickling import loads as pickle_loads

logger = logging.getLogger(__name__)

_SLOT_RECORD = 4096


def liveness_ttl_ms(heartbeat: float) -> int:
    """TTL of a heartbeat key: 3 beats, but never under 6 s.

    On a loaded 2-core machine a beating thread can be starved for seconds;
    a tighter TTL made live clients and hosts look dead.
    """
    return int(max(3 * heartbeat, 6.0) * 1000)


_IMPORT_HINT = (
    "hint: functions and classes from modules the worker cannot import must be "
    "shipped by value (cloudpickle.register_pickle_by_value(module)) or installed "
    "in the worker's runtime\n"
)


def _missing_module(exc: BaseException | None) -> str | None:
    """The module name of the first ModuleNotFoundError in *exc*'s chain."""
    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, ModuleNotFoundError) and exc.name:
            return exc.name
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def _load_hint(exc: BaseException, spec: HostSpec) -> str:
    """What to do when a worker cannot unpickle work: names the module and the remedy."""
    name = _missing_module(exc)
    if name is None:
        return _IMPORT_HINT
    from ..deps import remedy  # noqa: PLC0415 - only on this failure path

    top = name.split(".")[0]
    return (
        f"hint: the worker runtime of backend {spec.backend!r} cannot import {name!r}. "
        f"If it is a module of your project, ship it by value "
        f"(cloudpickle.register_pickle_by_value(module) or faasmp.runtime.call.ship_modules_under(dir)); "
        f"if it is an installed package: {remedy(spec.backend, spec.runtime or 'python', [top])}\n"
    )


@dataclasses.dataclass
class HostSpec:
    """Everything a host needs; sent as the invocation's payload."""

    url: str
    authkey: bytes
    run_id: str
    host_id: str
    slots: int
    max_slots: int
    idle_timeout: float
    heartbeat: float
    key_ttl: float
    invoked_at: float  # client clock
    clock_offset: float  # client's (redis clock - local clock)
    #: Seconds a Pool task (one chunk) may run before it fails with TimeoutError (0 = no limit).
    task_timeout: float = 0.0
    #: The compute backend and its runtime, to say how to install what a worker lacks.
    backend: str = "localhost"
    runtime: str = ""
    #: The run's host shared memory (None: segments are kept in Redis).
    host_memory: HostIdentity | None = None
    #: The client's main module when the host was invoked (a ``MainModule`` or
    #: None), installed by each slot before it takes work, as spawn's Pool
    #: workers import it at start: the first call then finds it in place.
    #: ``main_patched``/``main_log_level`` are the client's state it runs under.
    main: Any = None
    main_patched: bool = False
    main_log_level: int = 30

    def __repr__(self) -> str:  # the URL carries a password and authkey a secret
        return f"<HostSpec run={self.run_id} host={self.host_id} slots={self.slots}>"


def clock_offset(state: StateBackend) -> float:
    """Offset of the Redis server clock from ours (redis - local), in seconds."""
    best: tuple[float, float] | None = None
    for _ in range(3):
        t0 = time.time()
        server = state.time()
        t1 = time.time()
        rtt = t1 - t0
        if best is None or rtt < best[0]:
            best = (rtt, server - (t0 + t1) / 2)
    assert best is not None
    return best[1]


def host_main(spec: HostSpec) -> dict[str, Any]:
    """Lithops entry point: host warm worker slots until they are all idle."""
    started = time.time()
    host = Host(spec)
    try:
        host.run(started)
    finally:
        host.close()
    return {"host": spec.host_id, "slots_started": host.slots_started}


class Host:
    """Forks, supervises and replaces the worker slots of one invocation."""

    def __init__(self, spec: HostSpec) -> None:
        self.spec = spec
        self.keys = Keys(spec.run_id)
        self.state = open_state(spec.url, client_name=f"faasmp-host-{spec.host_id}", lean=True)
        self.state.watch_epoch(self.keys.k("epoch"))
        self.offset = clock_offset(self.state)
        self.pool = WarmPool(self.state, self.keys, int(spec.key_ttl * 1000))
        self.slots: dict[int, tuple[str, mmap.mmap]] = {}
        self.slots_started = 0
        self.lock = threading.Condition()
        self.stopping = False
        self.client_gone = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.state.close()

    # -- lifecycle --------------------------------------------------------
    def run(self, started: float) -> None:
        spec = self.spec
        at = started + self.offset - spec.clock_offset
        registered = msgs.HostRegistered(spec.host_id, spec.invoked_at, at)
        self.pool.register_host(
            spec.host_id,
            liveness_ttl_ms(spec.heartbeat),
            {"max_slots": spec.max_slots, "pid": os.getpid(), "hostname": os.uname().nodename},
            dumps_message(registered, spec.authkey),
        )
        with self.lock:
            self.spawn(spec.slots)
        threading.Thread(target=self._heartbeat, name="faasmp-host-hb", daemon=True).start()
        threading.Thread(target=self._control, name="faasmp-host-ctl", daemon=True).start()
        self._supervise()

    def spawn(self, n: int) -> None:
        """Fork *n* slots (call with self.lock held)."""
        allowed = max(min(n, self.spec.max_slots - len(self.slots)), 0)
        if allowed < n:
            # The client reserved n starting slots; give back what we refuse.
            with contextlib.suppress(*CONNECTION_ERRORS):
                self.pool.give_back(n - allowed)
        for _ in range(allowed):
            self.slots_started += 1
            slot_id = f"{self.spec.host_id}.{self.slots_started}"
            record = mmap.mmap(-1, _SLOT_RECORD)
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                code = 1
                # A host grows from its control thread, a daemon: the forked
                # slot's only thread keeps that flag, and every thread a
                # Process starts would inherit it, so the child would exit
                # without waiting for them.  A process' main thread is no daemon.
                threading.current_thread()._daemonic = False  # type: ignore[attr-defined]
                try:
                    code = Slot(self.spec, slot_id, record, self.offset).run()
                except BaseException:  # noqa: BLE001 - last resort in a forked child
                    traceback.print_exc()
                finally:
                    os._exit(code)
            self.slots[pid] = (slot_id, record)
        self.lock.notify_all()

    def _supervise(self) -> None:
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                with self.lock:
                    if self.slots:
                        continue
                    if self.stopping:
                        self._leave()
                        return
                    if self._try_exit():
                        return
                    # Someone asked us to grow while we were leaving.
                    self.lock.wait(0.1)
                continue
            with self.lock:
                slot_id, record = self.slots.pop(pid, (None, None))
            if slot_id is None or record is None:
                continue
            clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            if not clean:
                self._report_lost(slot_id, record, status)
                with self.lock:
                    if not self.stopping and not self.client_gone:
                        self.spawn(1)
            record.close()

    def _try_exit(self) -> bool:
        return self.pool.host_try_exit(self.spec.host_id)

    def _leave(self) -> None:
        with contextlib.suppress(*CONNECTION_ERRORS):
            self.pool.host_leave(self.spec.host_id)

    def _report_lost(self, slot_id: str, record: mmap.mmap, status: int) -> None:
        """A slot died: fail whatever it was running, with the cause."""
        if os.WIFSIGNALED(status):
            cause = f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            cause = f"exited with code {os.WEXITSTATUS(status)}"
        current = read_record(record)
        with contextlib.suppress(*CONNECTION_ERRORS):
            self.pool.slot_lost(slot_id)
            if current is not None:
                report_lost(self.state, self.keys, self.spec, current, slot_id, cause)

    def _heartbeat(self) -> None:
        spec = self.spec
        while True:
            time.sleep(spec.heartbeat)
            try:
                client = self.pool.host_beat(spec.host_id, liveness_ttl_ms(spec.heartbeat))
            except CONNECTION_ERRORS:
                client = False
            except Exception:  # noqa: BLE001 - a silent heartbeat death would look like a dead host
                logger.exception("faasmp host %s: heartbeat failed", spec.host_id)
                continue
            if not client:
                self._client_gone()
                return

    def _client_gone(self) -> None:
        """The client died or shut down: end every slot (and what they run)."""
        with self.lock:
            self.client_gone = True
            self.stopping = True
            for pid in list(self.slots):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _control(self) -> None:
        k, spec = self.keys, self.spec
        ctl = k.host_ctl(spec.host_id)
        while not self.stopping:
            try:
                item = self.state.blpop([ctl], timeout=spec.heartbeat * 2)
            except CONNECTION_ERRORS:
                return
            if item is None:
                continue
            try:
                msg = loads(item[1], spec.authkey)
            except Exception:  # noqa: BLE001 - a forged command is refused, the host goes on
                logger.warning("faasmp host %s: refused a control message", spec.host_id, exc_info=True)
                continue
            with self.lock:
                match msg:
                    case msgs.SpawnSlots(n=n):
                        self.spawn(n)
                    case msgs.StopHost():
                        self._client_gone()  # self.lock is an RLock
                        return
                    case msgs.KillBusy(slot=slot, pool_id=pool_id):
                        self._kill_busy(slot, pool_id)
                    case _:
                        logger.warning("faasmp host %s: ignored control message %r", spec.host_id, msg)

    def _kill_busy(self, slot: str, pool_id: str) -> None:
        """End *slot* only while it runs a task of *pool_id* (call with self.lock held).

        Not while it delivers a result and waits for the next task: that one
        takes its sentinel and stays warm.
        """
        for pid, (slot_id, rec) in self.slots.items():
            if slot_id != slot:
                continue
            current = read_record(rec)
            if isinstance(current, msgs.ServingPool) and current.pool_id == pool_id and current.busy:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


#: faasmp's modules whose objects a Process' arguments most often carry (shared
#: ctypes, locks and events, pipes, queues, shared memory).  A cold worker does
#: not import them (its first task may not need them), so each Process child,
#: forked from its slot, imported them again: ~2 ms of its start with one
#: RawArray argument.  A slot imports them once, the first time it is idle
#: with no work queued (importing them while a child runs slowed that child:
#: they compete for the cores).
_PROCESS_API = (
    "faasmp.sharedctypes",
    "faasmp.synchronize",
    "faasmp.connection",
    "faasmp.queues",
    "faasmp.shared_memory",
)


def _import_process_api() -> None:
    """Import :data:`_PROCESS_API` here, so the children forked from now on inherit it."""
    import importlib  # noqa: PLC0415

    for name in _PROCESS_API:
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - an optimisation: a child imports what it needs itself
                logger.debug("faasmp: could not import %s ahead of Process children", name, exc_info=True)


def read_record(record: mmap.mmap) -> msgs.SlotRecord | None:
    """What the slot writing *record* is doing now (None: nothing the host must report)."""
    (size,) = struct.unpack_from("I", record, 0)
    if not size:
        return None
    value: msgs.SlotRecord = pickle.loads(record[4 : 4 + size])
    return value


def write_record(record: mmap.mmap, value: msgs.SlotRecord | None) -> None:
    """What the slot is doing now, readable by its host if the slot dies."""
    if value is None:
        struct.pack_into("I", record, 0, 0)
        return
    data = pickle.dumps(value)[: _SLOT_RECORD - 4]
    record[4 : 4 + len(data)] = data
    struct.pack_into("I", record, 0, len(data))


def report_lost(
    state: StateBackend, k: Keys, spec: HostSpec, current: msgs.SlotRecord, slot_id: str, cause: str
) -> None:
    """Fail the work *current* describes: its slot died of *cause*."""
    match current:
        case msgs.RunningProcess(proc_id=proc_id):
            records = ProcessRecords(state, k, int(spec.key_ttl * 1000))
            records.exited(proc_id, -signal.SIGKILL, end_of_output(proc_id, spec.authkey), lost=cause)
        case msgs.ServingPool(pool_id=pool_id, job=job, index=index):
            lost = msgs.WorkerLost(slot_id, job, index, cause)
            state.rpush(k.pool_results(pool_id), dumps_message(lost, spec.authkey))


class Slot:
    """One warm worker: pulls RemoteCalls from the work queue and runs them."""

    def __init__(self, spec: HostSpec, slot_id: str, record: mmap.mmap, offset: float) -> None:
        self.spec = spec
        self.slot_id = slot_id
        self.record = record
        self.offset = offset
        self.keys = Keys(spec.run_id)
        self.state = open_state(spec.url, client_name=f"faasmp-slot-{slot_id}", lean=True)
        self.state.watch_epoch(self.keys.k("epoch"))
        self.sink = None
        #: (digest, patched) of a main module installed before the first call.
        self._prefetched: tuple[str, bool] | None = None

    def run(self) -> int:
        from ..backends.server import _pdeathsig_preexec  # noqa: PLC0415
        from ..context import attach_remote  # noqa: PLC0415 - worker-only import

        k, spec = self.keys, self.spec
        die_with_host = _pdeathsig_preexec()
        if callable(die_with_host):
            die_with_host()  # a killed host takes its slots (and their processes) along
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        attach_remote(spec, self.state)
        metrics.ship_to_client(self.state, k.events, spec.authkey, **self._metrics_args(self.slot_id))
        pool = WarmPool(self.state, k, int(spec.key_ttl * 1000))
        self._prefetch_main()
        pool.register_slot(self.slot_id)
        idle_since = time.monotonic()
        wait = min(spec.idle_timeout, max(spec.heartbeat * 3, 1.0))
        api_imported = False
        while True:
            if not api_imported and not self.state.llen(k.work):
                _import_process_api()
                api_imported = True
            try:
                item = self.state.blpop([k.work], timeout=wait)
            except CONNECTION_ERRORS:
                return 0  # Redis is gone: the run is over
            if item is None:
                if not self.state.exists(k.client):
                    return 0
                if time.monotonic() - idle_since >= spec.idle_timeout and pool.slot_try_exit(self.slot_id):
                    return 0
                continue
            try:
                call: RemoteCall = loads(item[1], spec.authkey)
            except AuthenticationError:
                logger.warning("faasmp slot %s: refused an unauthenticated work item", self.slot_id)
                continue
            self.state.srem(k.idle, self.slot_id)
            if call.kind is CallKind.STOP:
                self.state.srem(k.slots, self.slot_id)
                return 0
            dequeued = time.time()
            # From here a crash of this slot is reported for the call it took.
            if call.kind is CallKind.PROCESS:
                write_record(self.record, msgs.RunningProcess(call.call_id))
            elif call.kind is CallKind.POOL_WORKER:
                write_record(self.record, msgs.ServingPool(call.payload.pool_id))
            _match_patch(call.patched, call.storage)
            self._prepare_main(call)
            if call.kind is CallKind.PROCESS:
                self.run_process(call, dequeued)
            elif call.kind is CallKind.POOL_WORKER:
                self.run_pool_worker(call, dequeued)
            write_record(self.record, None)
            self.state.sadd(k.idle, self.slot_id)
            idle_since = time.monotonic()

    def _metrics_args(self, source: str) -> dict[str, Any]:
        spec = self.spec
        return {
            "source": source,
            "host": spec.host_id,
            "interval": spec.heartbeat,
            "offset": self.offset - spec.clock_offset,
        }

    def _prefetch_main(self) -> None:
        """Install the main module the host was given, before this slot takes work.

        spawn's Pool workers import the main module when they start, not at
        their first task; a warm slot does the same, so the first Process or
        task it runs does not pay for the script's top-level imports.  Its
        output reaches the client tagged with this slot.
        """
        spec = self.spec
        if spec.main is None:
            return
        _match_patch(spec.main_patched)
        self._install_main(spec.main, f"{self.slot_id}:main", spec.main_log_level)
        self._prefetched = (spec.main.digest, spec.main_patched)

    def _prepare_main(self, call: RemoteCall) -> None:
        """Install the client's main module as ``__mp_main__`` (once per slot and main module).

        After :func:`_match_patch`, so the script's top-level imports bind what
        the client's do.  Its output (top-level prints, a failure report) goes
        to the client as the call's own output would.  A main module installed
        before the slot's first call (:meth:`_prefetch_main`) is installed
        again if the call runs under another patch state or storage routes.
        """
        main = call.main
        prefetched, self._prefetched = self._prefetched, None
        if main is not None and prefetched is not None and prefetched[0] == main.digest:
            if (call.patched, call.storage) != (prefetched[1], None):
                main_module.INSTALLER.installed_digest = None  # its imports bound another patch state
        if main is None or main_module.INSTALLER.installed_digest == main.digest:
            main_module.install(None, "")  # marks the worker: nested work passes on what it has
            return
        self._install_main(main, f"{call.call_id}:main", call.log_level)

    def _install_main(self, main: Any, tag: str, log_level: int) -> None:
        old_out, old_err = sys.stdout, sys.stderr
        sink = self._install_output(log_level)
        sink.begin(tag)
        try:
            main_module.install(main, f"worker {self.slot_id}")
        finally:
            sink.end()
            sys.stdout, sys.stderr = old_out, old_err

    # -- processes ---------------------------------------------------------
    def run_process(self, call: RemoteCall, dequeued: float) -> None:
        k, spec = self.keys, self.spec
        proc_id = call.call_id
        write_record(self.record, msgs.RunningProcess(proc_id))
        # The child tells how it ran (for faasmp.stats) through this pipe; the
        # slot records it with the exit: no connection or command of its own.
        timing_r, timing_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the forked child
            code = 1
            os.close(timing_r)
            try:
                code = self._process_child(call, timing_w)
            finally:
                os._exit(code)
        os.close(timing_w)
        records = ProcessRecords(self.state, k, int(spec.key_ttl * 1000))
        at = dequeued + self.offset - spec.clock_offset
        sig = records.started(proc_id, self.slot_id, spec.host_id, pid, at)
        if sig:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, int(sig))
        ctl = k.proc_ctl(proc_id)
        status: list[int] = []

        def reap() -> None:
            _, st = os.waitpid(pid, 0)
            status.append(st)
            with contextlib.suppress(*CONNECTION_ERRORS):
                self.state.rpush(ctl, dumps_message(msgs.CHILD_EXITED, spec.authkey))

        threading.Thread(target=reap, name="faasmp-reaper", daemon=True).start()
        while not status:
            try:
                item = self.state.blpop([ctl], timeout=spec.heartbeat * 3)
            except CONNECTION_ERRORS:
                item = None
                if not status:
                    os.kill(pid, signal.SIGKILL)
            if item is None:
                if not status and not self.state.exists(k.client):
                    os.kill(pid, signal.SIGKILL)
                continue
            try:
                msg = loads(item[1], spec.authkey)
            except Exception:  # noqa: BLE001 - a forged command is refused
                logger.warning(
                    "faasmp slot %s: refused a process control message", self.slot_id, exc_info=True
                )
                continue
            match msg:
                case msgs.SignalProcess(signum=signum) if not status:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signum)
                case msgs.SignalProcess() | msgs.ChildExited():
                    pass  # exited: the loop ends on its status
                case _:
                    logger.warning("faasmp slot %s: ignored process control message %r", self.slot_id, msg)
        st = status[0]
        code = -os.WTERMSIG(st) if os.WIFSIGNALED(st) else os.WEXITSTATUS(st)
        ended = time.time() + self.offset - spec.clock_offset
        # The output a child pushed is already in the list; its end is marked
        # with the exit, also for a child that was killed or called os._exit
        # (join waits for it).
        timing = metrics.read_timing(timing_r)
        # A child that says it wrote nothing gets no end-of-output marker:
        # its join has nothing to wait for (the record tells it), and the
        # client's output listener no message to take.  One that was killed
        # before it said so (no timing) may have written: marked as before.
        wrote = timing.pop("wrote", 1)
        eof = end_of_output(proc_id, spec.authkey) if wrote else b""
        records.exited(proc_id, code, eof, ended=ended, count_task=True, timing=timing)

    def _process_child(self, call: RemoteCall, timing_fd: int) -> int:  # pragma: no cover - forked child
        from ..backends.server import _pdeathsig_preexec  # noqa: PLC0415
        from ..context import attach_remote  # noqa: PLC0415

        preexec = _pdeathsig_preexec()
        if callable(preexec):
            preexec()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        self.state = open_state(self.spec.url, client_name=f"faasmp-proc-{call.call_id}", lean=True)
        self.state.watch_epoch(self.keys.k("epoch"))
        attach_remote(self.spec, self.state)
        shipper = metrics.ship_to_client(
            self.state, self.keys.events, self.spec.authkey, **self._metrics_args(call.call_id)
        )
        sink = self._install_output(call.log_level)
        sink.begin(call.call_id)
        from .. import process as process_mod  # noqa: PLC0415

        process_mod._loading_remote_process(call.call_id)
        try:
            where = f"Process {call.call_id}"
            proc = loads(
                bulk.load_payload(self.spec.host_memory, call.payload, where, remove=True), self.spec.authkey
            )
        except BaseException as exc:  # noqa: BLE001 - reported like a failing process
            sys.stderr.write(f"Process {call.call_id}: the worker could not load it:\n")
            traceback.print_exc()
            sys.stderr.write(_load_hint(exc, self.spec))
            sink.end()
            return 1
        metrics.REGISTRY.process = proc.name
        run_start, cpu0 = time.time(), time.process_time()
        code = proc._bootstrap_remote()
        wrote = sink.end()  # flush; the slot sends the end-of-output marker after the exit, if it wrote
        offset = self.offset - self.spec.clock_offset
        timing = {
            "run_start": run_start + offset,
            "run_end": time.time() + offset,
            "cpu_s": time.process_time() - cpu0,
            "peak_rss": _peak_rss(),
            "out_bytes": sink.bytes_out,
            "wrote": int(wrote),
        }
        metrics.write_timing(timing_fd, timing)
        shipper.ship_last()
        return int(code)

    def _install_output(self, log_level: int) -> Any:
        from .output import install  # noqa: PLC0415

        out_key, authkey, state = self.keys.out, self.spec.authkey, self.state

        def push(msg: tuple[Any, ...]) -> None:
            state.rpush(out_key, dumps(msg, authkey))

        return install(push, log_level)

    # -- pool workers ------------------------------------------------------
    def run_pool_worker(self, call: RemoteCall, dequeued: float) -> None:
        """Serve one Pool: initializer once, then tasks until the sentinel.

        Messages (:mod:`faasmp.runtime.protocol`): :class:`PoolTask` and
        :data:`SENTINEL` in, :class:`WorkerStarted`, :class:`TaskDone`,
        :class:`InitFailed` and :class:`WorkerExited` out.
        """
        k, spec = self.keys, self.spec
        desc: msgs.PoolLease = call.payload
        pool_id = desc.pool_id
        res_key = k.pool_results(pool_id)
        authkey = spec.authkey
        old_out, old_err = sys.stdout, sys.stderr
        sink = self._install_output(call.log_level)
        write_record(self.record, msgs.ServingPool(pool_id))
        started = msgs.WorkerStarted(self.slot_id, spec.host_id, os.getpid(), call.call_id)
        self.state.rpush(res_key, dumps_message(started, authkey))
        try:
            reason = self._pool_loop(desc, res_key, sink)
        finally:
            sys.stdout, sys.stderr = old_out, old_err
        self.state.rpush(res_key, dumps_message(msgs.WorkerExited(self.slot_id, reason), authkey))

    def _pool_loop(self, desc: msgs.PoolLease, res_key: str, sink: Any) -> str:
        from .. import process as process_mod  # noqa: PLC0415

        k, spec, state, authkey = self.keys, self.spec, self.state, self.spec.authkey
        pool_id = desc.pool_id
        process_mod._set_pool_worker_identity(desc.worker_index, desc.worker_name)
        shared: dict[str, dict[str, Any]] = {}  # module globals of this worker's by-value functions
        if desc.initializer is not None:
            sink.begin(f"{pool_id}:init")
            try:
                init, initargs = loads(desc.initializer, authkey)
                share_globals(init, shared)(*initargs)
            except BaseException as exc:  # noqa: BLE001 - reported to the pool
                sink.end()
                failed = msgs.InitFailed(self.slot_id, ExceptionInfo.capture(exc))
                state.rpush(res_key, dumps_message(failed, authkey))
                return "initializer failed"
            sink.end()
        funcs: dict[bytes, Any] = {}
        maxtasks = desc.maxtasksperchild
        done = 0
        offset = self.offset - spec.clock_offset
        # The last result, delivered with the next take in one round trip.
        queue = PoolWorkerQueue(state, k, pool_id)
        pending: bytes | None = None
        serving = msgs.ServingPool(pool_id)
        delivering = serving  # the slot record while the last result goes out
        while maxtasks is None or done < maxtasks:
            try:
                if pending is not None:
                    # One round trip: deliver the result and wait for the next task.
                    # Marked as delivering: its host still reports the task if
                    # the slot dies now, but terminate() does not kill it.
                    write_record(self.record, delivering)
                    item = queue.deliver_and_take(pending, spec.heartbeat * 3)
                    pending = None
                    write_record(self.record, serving)
                else:
                    item = queue.take(spec.heartbeat * 3)
            except CONNECTION_ERRORS:
                return "redis unreachable"
            if item is None:
                if not state.exists(k.pool_alive(pool_id)):
                    return "pool gone"
                continue
            t_deq = time.time()
            try:
                task = loads(item[1], authkey)
            except AuthenticationError:
                logger.warning("faasmp slot %s: refused an unauthenticated pool task", self.slot_id)
                continue
            match task:
                case msgs.Sentinel():
                    return "sentinel"
                case msgs.PoolTask():
                    pass
                case _:
                    logger.warning("faasmp slot %s: ignored pool message %r", self.slot_id, task)
                    continue
            job, index = task.job, task.index
            write_record(self.record, msgs.ServingPool(pool_id, job, index))
            try:
                fn = funcs.get(task.fn_key)
                if fn is None:
                    fn = funcs[task.fn_key] = self._load_function(pool_id, task.fn_key, shared)
                chunk = _load_chunk(task, spec.host_memory)
            except Exception as exc:  # noqa: BLE001 - the task fails with the real cause
                unloaded = msgs.TaskDone(job, index, False, pickle_value(ExceptionInfo.capture(exc)), None)
                state.rpush(res_key, dumps_message(unloaded, authkey))
                continue
            task_id = f"{pool_id}:{job}:{index}"
            sink.begin(task_id)
            t_setup = time.time()
            cpu0 = time.process_time()
            try:
                dsm.acquire()  # the start of a task is an acquire of shared memory, its end a release
                if spec.task_timeout > 0:
                    ok, value = _run_limited(fn, task.mode, chunk, spec.task_timeout, task_id)
                else:
                    ok, value = _run_chunk(fn, task.mode, chunk)
                dsm.release()
            except Exception as exc:  # noqa: BLE001 - shared memory unreachable: the task fails
                ok, value = False, ExceptionInfo.capture(exc)
            t_run = time.time()
            cpu = time.process_time() - cpu0
            had_output = sink.end()
            timing = msgs.TaskTiming(
                t_deq + offset, t_setup + offset, t_run + offset, _peak_rss(), cpu, self.slot_id, had_output
            )
            try:
                body = pickle_value_parts(value)
            except Exception as exc:  # noqa: BLE001 - an unsendable result is an error
                ok, body = False, [pickle_value(ExceptionInfo.capture(_encoding_error(exc, value)))]
            done_msg = functools.partial(msgs.TaskDone, job, index, ok, timing=timing)
            where = f"the result of task {index} of job {job}"
            pending, _ = bulk.seal_payload(spec.host_memory, done_msg, body, authkey, where)
            delivering = msgs.ServingPool(pool_id, job, index, delivering=True)
            done += 1
        if pending is not None:
            queue.deliver(pending)
            write_record(self.record, serving)
        return "maxtasksperchild"

    def _load_function(self, pool_id: str, fn_key: bytes, shared: dict[str, dict[str, Any]]) -> Any:
        """The task function stored under *fn_key* (its module globals shared per pool worker)."""
        blob = self.state.hget(self.keys.pool_funcs(pool_id), fn_key)
        try:
            return share_globals(loads(blob, self.spec.authkey), shared)
        except Exception as exc:
            err = RuntimeError(f"the worker could not load the task's function: {exc!r}. {_IMPORT_HINT}")
            raise err from exc


def _load_chunk(task: msgs.PoolTask, host: HostIdentity | None) -> Any:
    """The task's arguments; failing to read or unpickle them fails the task with an error naming it."""
    where = f"the arguments of task {task.index} of job {task.job}"
    chunk = bulk.load_payload(host, task.chunk, where, remove=False)  # a retry reads them again
    try:
        return pickle_loads(chunk)
    except Exception as exc:
        raise pickle.UnpicklingError(
            f"the worker could not unpickle the arguments of task {task.index} of job {task.job}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _match_patch(patched: bool, storage_routes: Any = None) -> None:
    """Give remote code the ``multiprocessing`` and storage routes its client has."""
    from ..patch import patch, unpatch  # noqa: PLC0415

    if patched:
        patch()
    else:
        unpatch()
    # A reused worker whose new call has no routes drops the previous call's.
    if storage_routes is not None or "faasmp.storage" in sys.modules:
        from ..storage import match_routes  # noqa: PLC0415

        match_routes(storage_routes)


def _run_chunk(fn: Any, mode: msgs.TaskMode, chunk: Any) -> tuple[bool, Any]:
    try:
        match mode:
            case msgs.TaskMode.APPLY:
                args, kwds = chunk
                return True, fn(*args, **kwds)
            case msgs.TaskMode.MAP:
                return True, [fn(x) for x in chunk]
            case msgs.TaskMode.STARMAP:
                return True, [fn(*x) for x in chunk]
    except BaseException as exc:  # noqa: BLE001 - every task failure goes home
        return False, ExceptionInfo.capture(exc)


class _Overtime(BaseException):
    """Raised into a task by the task_timeout alarm (``except Exception`` in the task does not eat it)."""


def _run_limited(fn: Any, mode: msgs.TaskMode, chunk: Any, limit: float, task_id: str) -> tuple[bool, Any]:
    """:func:`_run_chunk` interrupted after *limit* seconds (config ``task_timeout``).

    A SIGALRM timer raises into the task's Python code (C code that does not
    check for signals delays it); the result is ``multiprocessing.TimeoutError``
    naming the task, and the worker goes on with its next task.
    """
    from multiprocessing import TimeoutError as MpTimeoutError  # noqa: PLC0415

    fired: list[bool] = []

    def on_alarm(signum: int, frame: Any) -> None:
        fired.append(True)
        raise _Overtime

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        try:
            ok, value = _run_chunk(fn, mode, chunk)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Overtime:  # fired just as the task returned
        ok, value = False, None
    finally:
        signal.signal(signal.SIGALRM, old)
    if fired:
        err = MpTimeoutError(
            f"pool task {task_id} ran longer than task_timeout={limit:g}s and was interrupted "
            "(FAASMP_TASK_TIMEOUT; 0 = no limit)"
        )
        return False, ExceptionInfo.capture(err)
    return ok, value


def _encoding_error(exc: BaseException, value: Any) -> BaseException:
    from multiprocessing.pool import MaybeEncodingError  # type: ignore[attr-defined]  # noqa: PLC0415

    return MaybeEncodingError(exc, value)


def _peak_rss() -> int:
    """The worker's peak resident set size in bytes so far.

    Reading a per-task peak from /proc costs ~80 us per task (more than a tiny
    task itself), so records carry the worker's high-water mark instead.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
