"""``Process`` with the stdlib's semantics, run as a serverless function.

``start()`` queues the Process object itself (so subclasses that override
``run()`` work) for a warm worker slot, which runs it in a forked child: exit
codes, ``sys.exit``, ``os._exit``, ``terminate()`` (-SIGTERM) and ``kill()``
(-SIGKILL) behave as with a local fork.  ``join``/``is_alive``/``exitcode``
read the exit status from Redis.

Differences from the stdlib, all documented on the members: ``pid`` is the
process id on the worker's machine (``ident`` too); ``sentinel`` is a local
file descriptor that a watcher thread makes readable when the process ends.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from . import stats
from .backends.redis.processes import ProcessRecords
from .runtime import bulk, dsm
from .runtime import protocol as msgs
from .runtime.call import CallKind, RemoteCall, dumps, dumps_message, dumps_named
from .runtime.output import end_of_output

if TYPE_CHECKING:
    from .context import FaasContext
    from .runtime.session import Session

_counter = itertools.count(1)


class _RemoteHandle:
    """Client-side control of one started process (the stdlib's ``Popen``)."""

    def __init__(self, session: Session, proc_id: str, blob: bytes) -> None:
        self.session = session
        self.proc_id = proc_id
        self.blob = blob
        k = session.keys
        self.hash_key = k.proc(proc_id)
        self.exit_key = k.proc_exit(proc_id)
        self.ctl_key = k.proc_ctl(proc_id)
        self.records = ProcessRecords(session.state, k, int(session.config.key_ttl * 1000))
        self.returncode: int | None = None
        #: The process' record as its exit left it (read by wait() with the exit code).
        self.exit_record: dict[bytes, bytes] | None = None
        self._pid: int | None = None
        #: join() has waited for the process' output to be replayed.
        self.output_done = False
        #: The call's payload field when the Process went through a host file (bulk.stash_payload).
        self.stashed: bytes | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            raw = self.session.state.lindex(self.exit_key, 0)
            if raw is not None:
                self.returncode = int(raw)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the process exits or *timeout* passes; returns the exit code."""
        if self.returncode is not None:
            return self.returncode
        session = self.session
        hb = session.config.heartbeat_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 3 * hb if deadline is None else min(3 * hb, max(deadline - time.monotonic(), 0))
            # Redis rounds blocking timeouts; 0 would mean forever.  The
            # record comes in the same round trip as the wait.
            code, record = self.records.wait_exit(self.proc_id, max(step, 0.001))
            if code is not None:
                self.returncode, self.exit_record = code, record
                return self.returncode
            self._check_lost(record)
            if self.returncode is not None:
                return self.returncode
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def had_output(self) -> bool:
        """Whether the ended process' output ends with a marker to wait for (unknown: True)."""
        if self.exit_record is None:
            # Its exit was seen by poll() (is_alive, exitcode, connection.wait): one read.
            self.exit_record = self.records.read(self.proc_id)
        return self.exit_record.get(b"eof") != b"0"

    def _check_lost(self, info: dict[bytes, bytes]) -> None:
        """A process whose worker invocation died exits with -SIGKILL (never a hang)."""
        state = info.get(b"state")
        if state == b"running":
            host = info[b"host"].decode()
            if not self.session.host_alive(host):
                eof = end_of_output(self.proc_id, self.session.authkey)
                self.records.exited(self.proc_id, -signal.SIGKILL, eof, lost="worker invocation died")
                self.poll()  # the exit code recorded first (the host may have reported it meanwhile)
        elif state is None or state == b"queued":
            self.session.check_start_error()

    def pid(self, timeout: float) -> int | None:
        if self._pid is None:
            deadline = time.monotonic() + timeout
            while True:
                raw = self.session.state.hget(self.hash_key, "pid")
                if raw is not None:
                    self._pid = int(raw)
                    break
                if self.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
        return self._pid

    def send_signal(self, sig: signal.Signals) -> None:
        authkey = self.session.authkey
        outcome = self.records.signal(
            self.proc_id,
            int(sig),
            dumps_message(msgs.SignalProcess(int(sig)), authkey),
            self.blob,
            end_of_output(self.proc_id, authkey),
        )
        if outcome == 2 and self.stashed is not None:  # cancelled while queued: no child will read it
            bulk.discard_payload(self.session.host_memory, self.stashed)

    def close(self) -> None:
        then = self.session.take_stat_read(self.hash_key)
        if then is None:
            self.records.delete(self.proc_id)
            return
        # The record is still to be read for the stats: in the same round trip.
        then(self.records.read_and_delete(self.proc_id))

    # -- statistics (faasmp.stats: a process is a job of one task) -------------
    def started_stats(self, name: str, submitted: float, serialize_s: float, uploaded: float) -> None:
        """Emit the start of the process (call right after it was queued at *uploaded*)."""
        self._stats_start = (name, submitted, serialize_s, uploaded)
        self.session.stats.emit(stats.JobStarted(self.proc_id, "process", 1, submitted))
        self.session.stats.emit(stats.ProcessStarted(self.proc_id, name, submitted))

    def ended_stats(self) -> None:
        """Emit the record of the ended process, once.

        Its timing (written by the process as it ended) came with ``join``'s
        wait, or (an exit seen by ``poll``) is read with the session's next
        heartbeat: no extra round trip either way.
        """
        start = self.__dict__.pop("_stats_start", None)
        if start is None or self.session.remote_mode:
            return
        name, submitted, serialize_s, uploaded = start
        received = self.session.now()
        session, proc_id, code = self.session, self.proc_id, self.returncode

        def emit(raw: dict[bytes, bytes]) -> None:
            info = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
            rec = stats.process_record(proc_id, name, submitted, serialize_s, uploaded, info, received, code)
            session.stats.emit(stats.TaskFinished(rec))
            session.stats.emit(stats.JobFinished(proc_id, received, rec.ok))

        if self.exit_record:
            emit(self.exit_record)  # join read it with the exit: no read of its own
        else:
            session.read_for_stats(self.hash_key, emit)


class BaseProcess:
    """A process object, like :class:`multiprocessing.Process`.

    ``Process(group=None, target=None, name=None, args=(), kwargs={}, *, daemon=None)``
    """

    _ctx: FaasContext | None = None
    _config: dict[str, Any]

    def __init__(
        self,
        group: None = None,
        target: Any = None,
        name: str | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        assert group is None, "group argument must be None for now"
        parent = current_process()
        count = next(_counter)
        self._identity: tuple[int, ...] = (*parent._identity, count)
        self._config = dict(parent._config)
        self._parent_pid = os.getpid()
        self._parent_name = parent.name
        self._parent_ref: tuple[str, str | None] = (
            ("proc", parent._proc_id) if parent._proc_id else ("client", None)
        )
        self._target = target
        self._args = tuple(args)
        self._kwargs = dict(kwargs) if kwargs else {}
        self._name = name or type(self).__name__ + "-" + ":".join(str(i) for i in self._identity)
        self._handle: _RemoteHandle | None = None
        self._closed = False
        self._proc_id: str | None = None
        if daemon is not None:
            self.daemon = daemon

    def run(self) -> None:
        """The code the process runs; override in a subclass, or pass ``target``."""
        if self._target:
            self._target(*self._args, **self._kwargs)

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        """Queue the process for a warm worker and return without waiting for it."""
        self._check_closed()
        assert self._handle is None, "cannot start a process twice"
        assert self._parent_pid == os.getpid(), "can only start a process object created by current process"
        assert not _current_process._config.get("daemon"), (
            "daemonic processes are not allowed to have children"
        )
        _cleanup()
        dsm.release()  # starting a process is a release of shared memory
        ctx = self._get_ctx()
        session = ctx.session
        self._proc_id = f"p{os.getpid()}-{'-'.join(map(str, self._identity))}-{session.run_id}"
        # The Process travels as its own signed blob inside the call, so a
        # worker that cannot unpickle it (a module it cannot import) still
        # knows which process failed and reports it instead of dying.
        self._mp_log_level = _mp_log_level()
        submitted, t_ser = session.now(), time.perf_counter()
        payload = dumps_named(
            self, session.authkey, f"Process {self._name!r} (its target, args or attributes)", session.config
        )
        serialize_s = time.perf_counter() - t_ser
        # In host mode a large Process (its arguments) goes through a host
        # file, which its child reads and removes; the call names the file.
        stashed = bulk.stash_payload(session.host_memory, [payload], f"Process {self._name!r}")
        call = RemoteCall(
            kind=CallKind.PROCESS,
            call_id=self._proc_id,
            payload=payload if stashed is None else stashed,
            submitted=submitted,
            log_level=_client_log_level(),
            patched=_patched(),
        )
        blob = dumps(call, session.authkey)
        handle = _RemoteHandle(session, self._proc_id, blob)
        handle.stashed = stashed
        # The worker may start before push_work's reply is back: the upload
        # is timed to the moment the call is sent, so it never ends after
        # the (same-clock) start the worker reports.
        uploaded = session.now()
        # The record and the queued call go out with the capacity check: one round trip.
        session.push_work(blob, record=(handle.hash_key, self._name))
        handle.started_stats(self._name, submitted, serialize_s, uploaded)
        # Like the stdlib: the parent's object no longer holds the target.
        del self._target, self._args, self._kwargs
        self._handle = handle
        ctx._register_work(self)
        _children.add(self)

    def _get_ctx(self) -> FaasContext:
        if self._ctx is not None:
            return self._ctx
        from .context import default_context  # noqa: PLC0415

        return default_context()

    def terminate(self) -> None:
        """Send SIGTERM (a queued process is cancelled with exit code -SIGTERM)."""
        self._check_closed()
        if self._handle is not None:
            self._handle.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL (a queued process is cancelled with exit code -SIGKILL)."""
        self._check_closed()
        if self._handle is not None:
            self._handle.send_signal(signal.SIGKILL)

    def join(self, timeout: float | None = None) -> None:
        """Wait until the process ends, or *timeout* seconds pass."""
        self._check_closed()
        assert self._parent_pid == os.getpid(), "can only join a child process"
        assert self._handle is not None, "can only join a started process"
        handle = self._handle
        res = handle.wait(timeout)
        if res is not None:
            handle.ended_stats()
            dsm.acquire()  # joining an ended process is an acquire of the memory it wrote
            _children.discard(self)
            if not handle.output_done:
                handle.output_done = True
                if handle.had_output():
                    self._get_ctx().session.wait_output(self._proc_id or "", timeout=2.0)

    def is_alive(self) -> bool:
        """True while the process has started and not yet ended (does not block)."""
        self._check_closed()
        if self is _current_process:
            return True
        assert self._parent_pid == os.getpid(), "can only test a child process"
        if self._handle is None:
            return False
        if self._handle.poll() is None:
            return True
        self._handle.ended_stats()
        _children.discard(self)
        return False

    def close(self) -> None:
        """Release the process' resources; raises ValueError while it still runs."""
        if self._handle is not None:
            if self._handle.poll() is None:
                raise ValueError(
                    "Cannot close a process while it is still running. "
                    "You should first call join() or terminate()."
                )
            self._handle.close()
            self._handle = None
            _children.discard(self)
        close_sentinel = self.__dict__.pop("_sentinel_close", None)
        if close_sentinel is not None:
            close_sentinel()
        self._closed = True

    def _check_closed(self) -> None:
        if self._closed:
            raise ValueError("process object is closed")

    # -- attributes ---------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @name.setter
    def name(self, name: str) -> None:
        assert isinstance(name, str), "name must be a string"
        self._name = name

    @property
    def daemon(self) -> bool:
        """Daemonic processes are terminated when their parent exits."""
        return bool(self._config.get("daemon", False))

    @daemon.setter
    def daemon(self, daemonic: bool) -> None:
        assert self._handle is None, "process has already started"
        self._config["daemon"] = daemonic

    @property
    def authkey(self) -> bytes:
        return bytes(self._config.get("authkey", b""))

    @authkey.setter
    def authkey(self, authkey: bytes) -> None:
        self._config["authkey"] = bytes(authkey)

    @property
    def exitcode(self) -> int | None:
        """None while running; the exit code, or -N if ended by signal N."""
        self._check_closed()
        if self._handle is None:
            return None
        return self._handle.poll()

    @property
    def ident(self) -> int | None:
        """The process id on the worker (waits briefly for a just-started process)."""
        self._check_closed()
        if self is _current_process:
            return os.getpid()
        if self._handle is None:
            return None
        return self._handle.pid(timeout=self._get_ctx().session.config.start_timeout)

    pid = ident

    @property
    def sentinel(self) -> ProcessSentinel:
        """A handle that becomes ready when the process ends, as the stdlib's.

        It is an ``int``: the read end of a local pipe that a watcher thread
        (blocking in Redis for the exit) closes the write end of when the
        process ends, so ``select()`` and ``multiprocessing.connection.wait()``
        see it readable, as with the stdlib; :func:`faasmp.connection.wait`
        waits on its Redis channel instead.  The same object is returned on
        every access; its descriptor is closed by :meth:`close` (or when the
        process object is garbage collected).
        """
        self._check_closed()
        if self._handle is None:
            raise ValueError("process not started")
        sentinel: ProcessSentinel | None = self.__dict__.get("_sentinel")
        if sentinel is None:
            r, w = os.pipe()
            sentinel = self.__dict__["_sentinel"] = ProcessSentinel(self, r)
            self.__dict__["_sentinel_close"] = weakref.finalize(self, os.close, r)
            threading.Thread(
                target=_close_at_exit,
                args=(self._handle, w),
                name=f"faasmp-sentinel-{self._name}",
                daemon=True,
            ).start()
        return sentinel

    def __repr__(self) -> str:
        exitcode = None
        if self is _current_process:
            status = "started"
        elif self._closed:
            status = "closed"
        elif self._handle is None:
            status = "initial"
        else:
            exitcode = self._handle.poll()
            status = "started" if exitcode is None else "stopped"
        info = [type(self).__name__, f"name={self._name!r}"]
        if self._handle is not None and self._handle._pid is not None:
            info.append(f"pid={self._handle._pid}")
        info.append(f"parent={self._parent_pid}")
        info.append(status)
        if exitcode is not None:
            code = _exitcode_to_name.get(exitcode, exitcode)
            info.append(f"exitcode={code}")
        if self.daemon:
            info.append("daemon")
        return "<{}>".format(" ".join(info))

    # -- pickling -----------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handle"] = None
        state.pop("_sentinel", None)
        state.pop("_sentinel_close", None)
        return state

    # -- remote side --------------------------------------------------------
    def _bootstrap_remote(self) -> int:
        """Run this process inside a worker's forked child; returns the exit code."""
        global _current_process, _parent_process
        _children.clear()
        _current_process = self
        _parent_process = _ParentProcess(self._parent_name, self._parent_pid, self._parent_ref)
        exitcode = 1
        level = self.__dict__.pop("_mp_log_level", None)
        if level is not None:  # as the stdlib's spawn preparation data
            from multiprocessing import util  # noqa: PLC0415

            util.get_logger().setLevel(level)
        try:
            dsm.acquire()  # the start of a child is an acquire of shared memory
            self.run()
            exitcode = 0
        except SystemExit as exc:
            exitcode = exit_code(exc)
        except BaseException:
            import traceback  # noqa: PLC0415

            sys.stderr.write(f"Process {self.name}:\n")
            traceback.print_exc()
        finally:
            # As the stdlib's child: wait for non-daemon threads, then children.
            threading._shutdown()  # type: ignore[attr-defined]
            _exit_children()
            _release_at_exit()
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (AttributeError, ValueError):
                    pass  # the program replaced or closed it, as the stdlib tolerates
        return exitcode


class Process(BaseProcess):
    """A faasmp process bound to the default context (see :class:`BaseProcess`)."""


def _close_at_exit(handle: _RemoteHandle, fd: int) -> None:
    """Watcher thread of a sentinel: close *fd* (the pipe's write end) when the process ends."""
    try:
        handle.wait(None)
    except Exception:  # noqa: BLE001, S110 - the run ended: the process is gone for us too
        pass
    finally:
        os.close(fd)


class ProcessSentinel(int):
    """``Process.sentinel``: a file descriptor readable once the process ended (see there).

    Also what :func:`faasmp.connection.wait` needs to wait in Redis
    (``ready``, ``channel``, ``session``).
    """

    process: BaseProcess

    def __new__(cls, process: BaseProcess, fd: int) -> ProcessSentinel:
        self = super().__new__(cls, fd)
        self.process = process
        return self

    def ready(self) -> bool:
        return self.process.exitcode is not None

    @property
    def channel(self) -> str:
        handle = self.process._handle
        assert handle is not None
        return handle.exit_key

    @property
    def session(self) -> Session:
        handle = self.process._handle
        assert handle is not None
        return handle.session

    def __repr__(self) -> str:
        return f"<ProcessSentinel {self.process.name}>"


class _MainProcess(BaseProcess):
    def __init__(self) -> None:
        self._identity = ()
        self._name = "MainProcess"
        self._parent_pid = None  # type: ignore[assignment]
        self._handle = None
        self._closed = False
        self._proc_id = None
        self._config = {"authkey": os.urandom(32), "semprefix": "/mp"}

    def close(self) -> None:
        pass


class _ParentProcess:
    """The parent as seen from a remote process (``parent_process()``)."""

    def __init__(self, name: str, pid: int, ref: tuple[str, str | None]) -> None:
        self.name = name
        self._pid = pid
        self._ref = ref
        self.daemon = False

    @property
    def pid(self) -> int:
        return self._pid

    ident = pid

    def is_alive(self) -> bool:
        from .context import default_context  # noqa: PLC0415

        session = default_context().session
        kind, proc_id = self._ref
        if kind == "client":
            return bool(session.state.exists(session.keys.client))
        assert proc_id is not None
        return session.state.hget(session.keys.proc(proc_id), "state") == b"running"

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_alive():
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(0.1)

    def __repr__(self) -> str:
        return f"<_ParentProcess name={self.name!r} parent={self._pid}>"


_current_process: BaseProcess = _MainProcess()
_parent_process: _ParentProcess | None = None
_children: set[BaseProcess] = set()
_children_lock = threading.Lock()

_exitcode_to_name = {-int(sig): f"-{sig.name}" for sig in signal.Signals}


def exit_code(exc: SystemExit) -> int:
    """The exit status ``sys.exit(code)`` gives, as the interpreter computes it.

    A non-integer code is written to stderr and gives 1.
    """
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    sys.stderr.write(str(exc.code) + "\n")
    return 1


def current_process() -> BaseProcess:
    """The process object of the code calling it (a worker's own Process remotely)."""
    return _current_process


def parent_process() -> _ParentProcess | None:
    """The parent of the current process, or None in the main process."""
    return _parent_process


def active_children() -> list[BaseProcess]:
    """Children of this process that are still running (reaps finished ones)."""
    _cleanup()
    return list(_children)


def _cleanup() -> None:
    """Forget children that have ended (one pipelined round trip per run, not one per child)."""
    from .backends.state import StateLostError  # noqa: PLC0415

    pending: dict[Any, list[tuple[BaseProcess, _RemoteHandle]]] = {}
    for p in list(_children):
        handle = p._handle
        if handle is None:
            continue
        # A child of a run that was shut down can never be waited for: forget
        # it (it must not break start() in a new run).
        if handle.session.closed or handle.returncode is not None:
            _children.discard(p)
        else:
            pending.setdefault(handle.session, []).append((p, handle))
    for children in pending.values():
        try:
            records = children[0][1].records
            codes = records.exit_codes([handle.proc_id for _, handle in children])
        except StateLostError:  # Redis lost the run's state: these can never be waited for
            for p, _ in children:
                _children.discard(p)
            continue
        for (p, handle), code in zip(children, codes, strict=True):
            if code is not None:
                handle.returncode = code
                _children.discard(p)


def _exit_children() -> None:
    """Like the stdlib at exit: terminate daemonic children, join the others."""
    for p in list(_children):
        if p.daemon:
            try:
                p.terminate()
            except Exception:  # noqa: BLE001, S110 - best effort at exit
                pass
    for p in list(_children):
        try:
            p.join()
        except Exception:  # noqa: BLE001, S110
            pass


def _patched() -> bool:
    from .patch import is_patched  # noqa: PLC0415

    return is_patched()


def _mp_log_level() -> int | None:
    """The level of multiprocessing's logger if the program created it (as the stdlib passes it on)."""
    from multiprocessing import util  # noqa: PLC0415

    logger = getattr(util, "_logger", None)
    return None if logger is None else logger.level


def _client_log_level() -> int:
    import logging  # noqa: PLC0415

    return logging.getLogger().getEffectiveLevel()


def _release_at_exit() -> None:
    """Ship the child's last shared-memory writes (its end is a release); report a failure."""
    try:
        dsm.release()
    except Exception:  # noqa: BLE001 - the exit code stays; the user sees why writes are missing
        import traceback  # noqa: PLC0415

        sys.stderr.write("faasmp: the process's last writes to shared memory could not be shared:\n")
        traceback.print_exc()


def _set_pool_worker_identity(index: int, name: str) -> None:
    """Make ``current_process()`` in a pool worker look like the stdlib's."""
    global _current_process
    proc = BaseProcess.__new__(BaseProcess)
    proc._identity = (index,)
    proc._name = name
    proc._parent_pid = None  # type: ignore[assignment]
    proc._handle = None
    proc._closed = False
    proc._proc_id = None
    proc._config = {"daemon": True}
    _current_process = proc


def _loading_remote_process(proc_id: str) -> None:
    """Call in a worker's forked child before the Process *proc_id* is unpickled there.

    What is unpickled with it then belongs to that process: a pipe end among
    its arguments is bound to it at once (see :mod:`faasmp.connection`), so
    it counts as closed when the process ends, even if it never used it.
    """
    _current_process._proc_id = proc_id
