"""A run: one state backend, one compute backend and the warm pool they host.

Two roles, two types, one interface (:class:`Session`, what the API modules
use):

* :class:`ClientSession` -- the client side of a run: the embedded server (if
  any), the Lithops executor, the warm pool of worker slots (its Redis records
  are ``backends.redis.hosts.WarmPool``), the output listener that replays
  remote prints and logs, and a monitor thread (heartbeat, key TTLs,
  capacity, host deaths, the client's IPC/sync counters and Redis latency
  samples).
* :class:`WorkerSession` -- inside a worker slot: shares the run's Redis
  state and asks the client for capacity instead of invoking functions.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from ..backends import host_memory as hostmem
from ..backends.compute import ComputeBackend, Invocation, open_compute
from ..backends.redis.hosts import WarmPool
from ..backends.server import EmbeddedServer
from ..backends.state import CONNECTION_ERRORS, StateBackend, StateError, StateLostError, open_state
from ..config import Config, redact_url
from ..deps import runtime_name
from ..stats import HostStarted, MetricsReport, StatsCollector
from . import metrics, output
from . import protocol as msgs
from .call import CallKind, RemoteCall, _storage_routes, dumps, dumps_message, loads
from .keys import Keys
from .worker import HostSpec, host_main, liveness_ttl_ms

logger = logging.getLogger(__name__)


#: Seconds the first users of a run wait for its embedded server to start
#: (it answers in ~35 ms; server.ready() itself gives up after 10 s).
_START_WAIT = 60.0


class WorkerStartError(RuntimeError):
    """No worker could be started for queued work (the compute backend failed)."""


class Session(abc.ABC):
    """What every part of a run uses, in the client and inside a worker.

    A run's client holds a :class:`ClientSession` (the server, the executor,
    the warm pool, the output listener and the monitor); code running inside a
    worker slot holds a :class:`WorkerSession`, which shares the run's Redis
    state and asks the client for capacity instead of invoking functions.
    The API modules (Process, Pool, the shared objects) take either.
    """

    #: True inside a worker (a :class:`WorkerSession`).
    remote_mode: bool = False
    config: Config
    authkey: bytes
    stats: StatsCollector
    run_id: str
    keys: Keys
    url: str
    state: StateBackend
    #: The client's (redis clock - local clock), in seconds.
    offset: float
    #: Keys of shared objects this process owns, renewed by the client's monitor.
    live_keys: dict[int, list[str]]
    #: Where the run's shared memory segments live when they are host shared
    #: memory (files every process maps); None: in Redis (the DSM).
    host_memory: hostmem.HostIdentity | None = None
    _closed: threading.Event
    _start_error: str | None
    #: Hashes to read for faasmp.stats with the client's next beat (see read_for_stats).
    _stat_reads: list[tuple[str, Callable[[dict[bytes, bytes]], None]]]

    def __repr__(self) -> str:
        mode = "remote" if self.remote_mode else self.config.backend
        return f"<{type(self).__name__} run={self.run_id} {mode} redis={redact_url(self.url)}>"

    @classmethod
    def remote(cls, spec: HostSpec, state: StateBackend, stats: StatsCollector) -> WorkerSession:
        """The session of code running inside a worker slot."""
        return WorkerSession(spec, state, stats)

    # -- clocks -------------------------------------------------------------
    def now(self) -> float:
        """Wall-clock time on the client's clock (what stats records use)."""
        return time.time()

    # -- capacity -------------------------------------------------------------
    @abc.abstractmethod
    def push_work(self, *blobs: bytes, front: bool = False, record: tuple[str, str] | None = None) -> None:
        """Queue RemoteCalls for the warm pool and make sure slots will take them.

        *record* (``(hash key, name)``) is a queued Process' record, written
        in the same round trip.
        """

    def check_start_error(self) -> None:
        """Raise WorkerStartError if the backend failed to start a worker."""
        if self._start_error is not None:
            raise WorkerStartError(
                f"a faasmp worker invocation failed on backend {self.config.backend!r}: {self._start_error}"
            )

    def host_alive(self, host_id: str) -> bool:
        return bool(self.state.exists(self.keys.host_alive(host_id)))

    @abc.abstractmethod
    def wait_output(self, task_id: str, timeout: float = 5.0) -> None:
        """Wait until the output of *task_id* has been replayed (only the client replays it)."""

    @abc.abstractmethod
    def shutdown(self, timeout: float = 5.0) -> None:
        """End the run (only its client does)."""

    # -- statistics -----------------------------------------------------------
    def read_for_stats(self, key: str, then: Callable[[dict[bytes, bytes]], None]) -> None:
        """Read hash *key* with the next beat's pipeline and pass it to *then* (no round trip of its own).

        For statistics only: a Process' timing is read off its ``join``.
        """
        self._stat_reads.append((key, then))

    def take_stat_read(self, key: str) -> Callable[[dict[bytes, bytes]], None] | None:
        """Withdraw the pending read of *key* (its owner reads it itself); its callback, if any."""
        for i, (k, then) in enumerate(self._stat_reads):
            if k == key:
                del self._stat_reads[i]
                return then
        return None

    @property
    def closed(self) -> bool:
        """True once the run ended (a worker's session never is: its run ends with its client)."""
        return self._closed.is_set()

    @property
    def started(self) -> bool:
        """True once the run's Redis answers (a run with an embedded server starts in the background)."""
        return True


class WorkerSession(Session):
    """The session of code running inside a worker slot: the run's state, no server or executor."""

    remote_mode = True

    def __init__(self, spec: HostSpec, state: StateBackend, stats: StatsCollector) -> None:
        self.config = Config(
            idle_timeout=spec.idle_timeout, heartbeat_interval=spec.heartbeat, key_ttl=spec.key_ttl
        )
        self.authkey = spec.authkey
        self.stats = stats
        self.run_id = spec.run_id
        self.keys = Keys(spec.run_id)
        self.url = spec.url
        self.state = state
        self.offset = spec.clock_offset
        self.host_memory = spec.host_memory
        self._closed = threading.Event()
        self.live_keys = {}
        self._start_error = None
        self._stat_reads = []
        self.warm_pool = WarmPool(state, self.keys, int(spec.key_ttl * 1000))

    def push_work(self, *blobs: bytes, front: bool = False, record: tuple[str, str] | None = None) -> None:
        """Queue the calls and ask the client for capacity: one round trip."""
        self.warm_pool.push_from_worker(blobs, front=front, record=record)

    def wait_output(self, task_id: str, timeout: float = 5.0) -> None:
        """Nothing to wait for: the client replays the output, not a worker."""
        return

    def shutdown(self, timeout: float = 5.0) -> None:
        """Nothing to end: the run belongs to its client (a worker's atexit must not stop it)."""
        return


def _main_for_hosts() -> tuple[Any, bool, int]:
    """The main module a new host's slots install before they take work (see ``HostSpec.main``).

    Only a script or a ``-m`` module: its content is fixed for the run.  A
    notebook's namespace changes from cell to cell, so each call brings its
    own.  None while storage routes are on (the first call installs it under
    them) or when the main module cannot be described now.
    """
    from ..patch import is_patched  # noqa: PLC0415
    from .main_module import describe  # noqa: PLC0415

    try:
        main = describe(namespaces=False)
    except RuntimeError:  # a worker re-running its main module (spawn's bootstrapping error)
        main = None
    if main is None or _storage_routes() is not None:
        return None, False, logging.WARNING
    return main, is_patched(), logging.getLogger().getEffectiveLevel()


class ClientSession(Session):
    """A run's client: the embedded server, the executor, the warm pool, output replay, the monitor."""

    def __init__(self, config: Config, authkey: bytes, stats: StatsCollector) -> None:
        self.config = config
        self.authkey = authkey
        self.stats = stats
        self.run_id = secrets.token_hex(6)
        self.keys = Keys(self.run_id)
        self.server: EmbeddedServer | None = None
        self._closed = threading.Event()
        self._grow_lock = threading.Lock()
        self._starting: dict[str, tuple[Invocation, int]] = {}
        self._start_error: str | None = None
        self._owner_pid = os.getpid()
        #: Keys of shared objects this process owns, renewed by the monitor.
        self.live_keys: dict[int, list[str]] = {}
        self._last_renewal = time.monotonic()
        self._eof_lock = threading.Condition()
        self._eof: set[str] = set()
        self._compute: ComputeBackend | None = None
        self._compute_error: BaseException | None = None
        self._compute_ready = threading.Event()
        self.output_sink: Callable[[tuple[Any, ...]], None] = output.replay
        #: Hashes to read for faasmp.stats with the next beat (see read_for_stats).
        self._stat_reads: list[tuple[str, Callable[[dict[bytes, bytes]], None]]] = []
        self._metrics_sent: tuple[int, int] = (0, 0)
        self.host_memory = self._host_memory(config)

        if config.redis_url is None and not config.is_local:
            raise ValueError(
                f"the embedded Redis server cannot be used with the {config.backend!r} "
                "backend: remote functions could not reach a server on this machine. "
                "Set FAASMP_REDIS_URL to a Redis reachable from both (for example a "
                "managed Redis with a password, rediss:// for TLS)."
            )
        self._ttl_ms = liveness_ttl_ms(config.heartbeat_interval)
        #: The client's (redis clock - local clock); measured when the run starts.
        self.offset = 0.0
        self._started = threading.Event()
        self._start_failure: StateError | None = None
        self._starter: int | None = None  # the thread id of the run's starter
        if config.redis_url is None:
            # Spawned, not awaited: a fresh server answers ~35 ms after it is
            # spawned (valkey calibrates its clock against 3 x 10 ms sleeps at
            # start-up, with no option to skip it), and nothing of a Pool() or
            # Process() needs to wait for that.  The run starts on the monitor
            # thread; every new connection waits for it (_await_start), so the
            # first operation that needs the server waits, or raises the
            # server's error.
            self.server = EmbeddedServer.spawn(config.redis_server)
            self.url = self.server.url
            self.state: StateBackend = open_state(
                self.url, client_name="faasmp-client", ready=self._await_start
            )
            self.warm_pool = WarmPool(self.state, self.keys, int(config.key_ttl * 1000))
            # The monitor thread starts the run (see _monitor_loop).
        else:
            # An external server answers now or never: its errors are raised here.
            self.url = config.redis_url
            try:
                self.state = open_state(self.url, client_name="faasmp-client")
            except ValueError as exc:  # a bad option in the URL
                raise self._unreachable(exc) from exc
            self.warm_pool = WarmPool(self.state, self.keys, int(config.key_ttl * 1000))
            self._start_run()
            self._started.set()
        for target, name in ((self._monitor_loop, "monitor"), (self._output_loop, "output")):
            threading.Thread(target=target, name=f"faasmp-{name}", daemon=True).start()
        # Lithops takes ~0.3 s to import and set up; do it while the server
        # starts.  Last: the import holds the GIL most of the time, and each
        # thread start waits for its thread to run (up to the 5 ms switch
        # interval each while the import runs).
        threading.Thread(target=self._make_compute, name="faasmp-compute-init", daemon=True).start()
        # Runs before the interpreter joins non-daemon threads (Lithops' job
        # manager waits for our long-lived invocations), like concurrent.futures.
        ref = weakref.ref(self)

        def _at_exit() -> None:
            session = ref()
            if session is not None:
                session.shutdown()

        threading._register_atexit(_at_exit)  # type: ignore[attr-defined]

    # -- the run's start -----------------------------------------------------
    def _host_memory(self, config: Config) -> hostmem.HostIdentity | None:
        """The run's host shared memory directory, or None (segments in Redis): see Config.shared_memory_mode.

        Directories left by runs whose client is gone are removed first.  A
        forced ``host`` mode that cannot make its directory raises; ``auto``
        falls back to the DSM.
        """
        if config.shared_memory_mode() != "host":
            return None
        try:
            hostmem.clean_dead_runs()
            return hostmem.create_run_dir(self.run_id)
        except (OSError, hostmem.HostMemoryError) as exc:
            if config.shared_memory == "host":
                raise
            logger.warning("faasmp: host shared memory unavailable (%s); segments are kept in Redis", exc)
            return None

    def _start_run(self) -> None:
        """Make sure the server answers, write the run's keys, measure the clock offset.

        Raises :class:`StateError` that names the server and why it cannot be used.
        """
        try:
            if self.server is not None:
                self.server.ready()
            else:
                self.state.ping()
        except Exception as exc:
            if self.server is not None:
                self.server.stop()
            raise self._unreachable(exc) from exc
        # It answers: an error from here on is Redis refusing faasmp's keys or
        # commands (an ACL), raised as it is.  The offset is the best of three
        # samples, the first with the run's keys: a sample's reply may wait for
        # the GIL (the Lithops import runs meanwhile), which skews its midpoint.
        best: tuple[float, float] | None = None
        for i in range(3):
            t0 = time.time()
            server_now = self.warm_pool.begin_run(self._ttl_ms) if i == 0 else self.warm_pool.server_time()
            t1 = time.time()
            if best is None or t1 - t0 < best[0]:
                best = (t1 - t0, server_now - (t0 + t1) / 2)
        assert best is not None
        self.offset = best[1]
        # The run's epoch (written by begin_run): while it exists the server
        # holds the run's state.  Every process of the run checks it on each
        # new connection, and the monitor on each beat, so a restarted server
        # fails the run loudly.
        self.state.watch_epoch(self.keys.k("epoch"))

    def _unreachable(self, exc: BaseException) -> StateError:
        return StateError(
            f"cannot reach Redis at {redact_url(self.url)}: {exc}. Check FAASMP_REDIS_URL "
            "(host, port, password) or unset it to use the embedded server."
        )

    def _start_in_background(self) -> None:
        """The embedded server's run start (on the monitor thread); a failure ends the session."""
        self._starter = threading.get_ident()
        try:
            self._start_run()
        except Exception as exc:  # noqa: BLE001 - raised to the run's first users by _await_start
            self._start_failure = exc if isinstance(exc, StateError) else self._unreachable(exc)
            # Closed: the context starts a new session on its next use, and
            # this one's threads leave.
            self._closed.set()
        finally:
            self._started.set()

    def _await_start(self) -> None:
        """Called before every new Redis connection: wait until the run started, or raise why it did not."""
        if not self._started.is_set():
            if threading.get_ident() == self._starter:
                return  # the starter's own connection
            # server.ready() gives up after 10 s and each of begin_run's reads
            # after the read timeout: the start ends well within this.
            if not self._started.wait(_START_WAIT):
                raise StateError(f"the embedded Redis server did not start within {_START_WAIT:.0f} s")
        failure = self._start_failure
        if failure is not None:
            # A new exception per caller (one object raised in many threads
            # would collect all their tracebacks).
            raise StateError(str(failure)) from failure.__cause__

    @property
    def started(self) -> bool:
        """True once the run's server answers and its keys are written (False while starting or failed)."""
        return self._started.is_set() and self._start_failure is None

    # -- compute ------------------------------------------------------------
    def _make_compute(self) -> None:
        try:
            self._compute = open_compute(self.config)
        except BaseException as exc:  # noqa: BLE001 - surfaced when compute is needed
            self._compute_error = exc
        finally:
            self._compute_ready.set()

    @property
    def compute(self) -> ComputeBackend:
        # Bounded: making a Lithops executor can hang (a cloud backend's
        # endpoint that never answers), and everything that starts a worker
        # would wait here with it.
        if not self._compute_ready.wait(self.config.start_timeout):
            raise WorkerStartError(
                f"the compute backend {self.config.backend!r} did not start within "
                f"{self.config.start_timeout:.0f} s: creating its Lithops executor has not returned "
                "(check the backend's configuration and that its endpoints are reachable; "
                "start_timeout sets this limit)"
            )
        if self._compute is None:
            raise WorkerStartError(f"the compute backend could not start: {self._compute_error}") from (
                self._compute_error
            )
        return self._compute

    # -- capacity -------------------------------------------------------------
    def push_work(self, *blobs: bytes, front: bool = False, record: tuple[str, str] | None = None) -> None:
        """Queue the calls and reserve slots for them (one round trip), then start what is missing."""
        need = self.warm_pool.push_and_reserve(blobs, self.config.max_workers, front=front, record=record)
        self._start(need)

    def ensure_capacity(self) -> None:
        """Start slots for queued work that no idle or starting slot will take."""
        self._start(self.warm_pool.reserve_capacity(self.config.max_workers))

    def _start(self, need: int) -> None:
        """Start *need* reserved slots on a thread of their own (Pool() and Process.start() return at once).

        On a cold run the first invocation waits for the Lithops executor
        (0.16-0.22 s of set-up here, made in the background since the session
        started): most of a cold ``Pool(8)``.  The caller pickles and submits
        its work meanwhile.  A failure is recorded as the start error every
        waiter already checks (:meth:`check_start_error`), as a synchronous
        failure was.
        """
        if need <= 0:
            return

        def run() -> None:
            try:
                if not self._closed.is_set():
                    self.grow(need)
            except Exception as exc:  # noqa: BLE001 - reported to the work's waiters
                if self._start_error is None:
                    self._start_error = str(exc)
                logger.debug("faasmp: starting %d workers failed", need, exc_info=True)

        threading.Thread(target=run, name="faasmp-grow", daemon=True).start()

    def prestart(self, n: int) -> None:
        """Make the warm pool hold at least *n* slots (starting them if needed)."""
        if n < 1:
            raise ValueError(f"warm pool size must be >= 1, got {n}")
        if n > self.config.max_workers:
            raise ValueError(f"warm pool size {n} exceeds max_workers={self.config.max_workers}")
        counts = self.warm_pool.counts("slots", "starting")
        missing = n - counts["slots"] - counts["starting"]
        if missing > 0:
            self.warm_pool.reserve(missing)
            self.grow(missing)

    def shrink(self, n: int) -> int:
        """Ask idle slots to leave until about *n* remain; returns how many were asked.

        Busy slots (running a Process or serving a Pool) are never interrupted:
        the STOP calls go to the front of the work queue, where only idle slots look.
        """
        if n < 0:
            raise ValueError(f"warm pool size must be >= 0, got {n}")
        k = self.keys
        counts = self.warm_pool.counts("slots", "idle")
        extra = min(counts["slots"] - n, counts["idle"])
        if extra > 0:
            stop = dumps(RemoteCall(CallKind.STOP, "stop"), self.authkey)
            self.state.lpush(k.work, *[stop] * extra)
        return max(extra, 0)

    def wait_ready(self, n: int, timeout: float) -> None:
        """Block until *n* slots are registered (or raise WorkerStartError)."""
        deadline = time.monotonic() + timeout
        while int(self.state.scard(self.keys.slots)) < n:
            self.check_start_error()
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerStartError(
                    f"{n} warm workers did not start within {timeout:.0f}s: {self._start_report(n)}"
                )
            # Woken by each registering slot; the cap re-checks start errors.
            self.state.blpop([self.keys.ready], timeout=min(left, self.config.heartbeat_interval))

    def _start_report(self, n: int) -> str:
        """Where the warm pool's start stands: what a user needs to tell why it did not finish."""
        k = self.keys
        slots, hosts = int(self.state.scard(k.slots)), int(self.state.scard(k.hosts))
        parts = [f"{slots} of {n} registered, in {hosts} running host invocation(s)"]
        for host_id, (inv, want) in list(self._starting.items()):
            if inv.finished():
                parts.append(
                    f"invocation {host_id} ({want} slots) ended: {inv.error() or 'without starting a worker'}"
                )
            else:
                parts.append(
                    f"invocation {host_id} ({want} slots) has not registered: still queued or starting "
                    f"in backend {self.config.backend!r} (a busy machine, or a slow runtime import)"
                )
        if self._start_error is not None:
            parts.append(f"last start error: {self._start_error}")
        return "; ".join(parts)

    def grow(self, n: int) -> None:
        """Start *n* more slots: first in live hosts with room, then new invocations."""
        k, cfg = self.keys, self.config
        with self._grow_lock:
            hosts = sorted(h.decode() for h in self.state.smembers(k.hosts))
            if hosts:
                slot_ids = [s.decode() for s in self.state.smembers(k.slots)]
                per_inv = cfg.effective_slots_per_invocation()
                for host in hosts:
                    room = per_inv - sum(1 for s in slot_ids if s.startswith(host + "."))
                    take = min(room, n)
                    if take > 0 and self.warm_pool.ask_host_to_spawn(
                        host, dumps_message(msgs.SpawnSlots(take), self.authkey)
                    ):
                        n -= take
                    if n <= 0:
                        return
            while n > 0:
                compute = self.compute
                live = len(hosts) + len(self._starting)
                if compute.max_concurrency is not None and live >= compute.max_concurrency:
                    self.state.incrby(k.starting, -n)
                    logger.warning(
                        "faasmp: cannot start %d more workers: backend %r runs at most %d invocations",
                        n,
                        cfg.backend,
                        compute.max_concurrency,
                    )
                    return
                slots = min(n, cfg.effective_slots_per_invocation())
                self._invoke_host(slots)
                n -= slots

    def _invoke_host(self, slots: int) -> None:
        cfg = self.config
        host_id = secrets.token_hex(3)
        spec = HostSpec(
            url=self.url,
            authkey=self.authkey,
            run_id=self.run_id,
            host_id=host_id,
            slots=slots,
            max_slots=cfg.effective_slots_per_invocation(),
            idle_timeout=cfg.idle_timeout,
            heartbeat=cfg.heartbeat_interval,
            key_ttl=cfg.key_ttl,
            invoked_at=self.now(),
            clock_offset=self.offset,
            task_timeout=cfg.task_timeout,
            backend=cfg.backend,
            runtime=runtime_name(cfg),
            host_memory=self.host_memory,
        )
        spec.main, spec.main_patched, spec.main_log_level = _main_for_hosts()
        try:
            inv = self.compute.invoke(host_main, spec)
        except Exception as exc:
            self.state.incrby(self.keys.starting, -slots)
            self._start_error = str(exc)
            raise WorkerStartError(str(exc)) from exc
        self._starting[host_id] = (inv, slots)

    def status(self) -> dict[str, Any]:
        """Counts of the warm pool: hosts, slots, idle slots, queued calls, tasks run."""
        c = self.warm_pool.counts()
        return {
            "backend": self.config.backend,
            "redis": "embedded" if self.server else redact_url(self.url),
            "hosts": c["hosts"],
            "workers": c["slots"],
            "idle": c["idle"],
            "starting": c["starting"],
            "queued": c["queued"],
            "tasks_run": c["tasks_run"],
        }

    # -- output -------------------------------------------------------------
    def _output_loop(self) -> None:
        out = self.keys.out
        while not self._closed.is_set():
            try:
                item = self.state.blpop([out], timeout=1)
            except CONNECTION_ERRORS:
                if self._closed.wait(0.5):
                    return
                continue
            if item is None:
                continue
            try:
                msg = loads(item[1], self.authkey)
            except Exception:  # noqa: BLE001 - a bad message must not stop the listener
                logger.warning("faasmp: dropped an unauthenticated output message")
                continue
            if msg[0] == "eof":
                with self._eof_lock:
                    self._eof.add(msg[1])
                    self._eof_lock.notify_all()
                continue
            try:
                self.output_sink(msg)
            except Exception:  # noqa: BLE001
                logger.exception("faasmp: output sink failed")

    def wait_output(self, task_id: str, timeout: float = 5.0) -> None:
        """Wait until the output of *task_id* has been replayed (it said it had some)."""
        deadline = time.monotonic() + timeout
        with self._eof_lock:
            while task_id not in self._eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._eof_lock.wait(left)
            self._eof.discard(task_id)

    # -- monitor ------------------------------------------------------------
    def _monitor_loop(self) -> None:
        if not self._started.is_set():
            # A run with an embedded server starts here, on this thread, so
            # its client need not wait for the server (one thread less to start).
            self._start_in_background()
        k, hb = self.keys, self.config.heartbeat_interval
        last_beat = 0.0
        while not self._closed.is_set():
            try:
                item = self.state.blpop([k.events, k.grow], timeout=hb / 2)
                if item is not None:
                    self._on_event(item)
                now = time.monotonic()
                if now - last_beat >= hb / 2:
                    last_beat = now
                    self._beat()
            except StateLostError as exc:
                logger.error("faasmp: %s", exc)
                return
            except CONNECTION_ERRORS:
                if self._closed.wait(0.5):
                    return
            except Exception:  # noqa: BLE001 - the monitor must survive anything
                logger.exception("faasmp monitor error")

    def _on_event(self, item: tuple[bytes, bytes]) -> None:
        key, value = item
        if key.decode() == self.keys.grow:
            self.ensure_capacity()
            return
        match loads(value, self.authkey):
            case msgs.HostRegistered(host_id=host_id, invoked=invoked, started=started):
                self._starting.pop(host_id, None)
                self.stats.emit(HostStarted(host_id, invoked, started))
            case MetricsReport() as report:
                self.stats.emit(report)
            case other:
                logger.warning("faasmp: ignored run event %r", other)

    @staticmethod
    def _deliver_stat_reads(thens: list[Callable[[dict[bytes, bytes]], None]], replies: list[Any]) -> None:
        for then, reply in zip(thens, replies, strict=True):
            try:
                then(reply or {})
            except Exception:  # noqa: BLE001 - statistics must not stop the monitor
                logger.exception("faasmp: a statistics callback failed")

    def collect_stats(self) -> None:
        """Emit this process' counters, the pending process records and the worker reports already queued."""
        reads, self._stat_reads = self._stat_reads, []
        if reads:
            replies = self.warm_pool.read_hashes([key for key, _ in reads])
            self._deliver_stat_reads([then for _, then in reads], replies)
        self._metrics_sent = metrics.REGISTRY.signature()
        self.stats.emit(metrics.REGISTRY.report(self.now()))
        events = self.keys.events
        while items := self.state.lpop_many(events, 100):
            for value in items:
                self._on_event((events.encode(), value))

    def _beat(self) -> None:
        k = self.keys
        # Run-wide keys expire unless the client keeps renewing them: the
        # safety net when the client is killed and cannot delete them.
        ttl = int(self.config.key_ttl * 1000)
        run_keys = (
            k.work,
            k.out,
            k.events,
            k.grow,
            k.hosts,
            k.slots,
            k.idle,
            k.starting,
            k.tasks_run,
            k.ready,
        )
        reads, self._stat_reads = self._stat_reads, []
        queued, epoch, replies = self.warm_pool.client_beat(self._ttl_ms, run_keys, [key for key, _ in reads])
        if reads:
            self._deliver_stat_reads([then for _, then in reads], replies)
        if not epoch:
            self.state.mark_lost("the run's epoch key is gone: the server restarted or was flushed")
            self.state.ping()  # raises the StateLostError
        # The client's own counters, with each beat.  One registry per process,
        # possibly several sessions (contexts): each remembers what it was sent.
        signature = metrics.REGISTRY.signature()
        if signature != self._metrics_sent:
            self._metrics_sent = signature
            self.stats.emit(metrics.REGISTRY.report(self.now()))
        for host_id, (inv, slots) in list(self._starting.items()):
            if inv.finished():
                self._starting.pop(host_id, None)
                # A host that registered and already left (its "host" event
                # not read yet) started fine; only one that never registered failed.
                if not self.state.exists(k.k("host", host_id)):
                    err = inv.error() or "the invocation ended before it started any worker"
                    self._start_error = err
                    self.state.incrby(k.starting, -slots)
                    logger.error("faasmp: worker invocation %s failed: %s", host_id, err)
        self._forget_dead_hosts()
        if time.monotonic() - self._last_renewal >= self.config.key_ttl / 3:
            self._renew_live_keys(ttl)
        if queued:
            self.ensure_capacity()

    def _renew_live_keys(self, ttl_ms: int) -> None:
        """Renew the TTL of every key of a live owned object (in batches)."""
        self._last_renewal = time.monotonic()
        keys = [key for group in list(self.live_keys.values()) for key in group]
        self.warm_pool.renew(keys, ttl_ms)

    def _forget_dead_hosts(self) -> None:
        """Drop hosts whose heartbeat expired (and their slots) from the pool's books.

        Their work is failed by its owners (Process.join, the Pool's handler),
        which check the same heartbeat; this keeps capacity planning honest so
        queued work gets new workers instead of waiting for dead ones.
        """
        dead = self.warm_pool.forget_dead_hosts()
        if not dead:
            return
        logger.warning("faasmp: worker invocation(s) %s stopped answering; their workers are gone", dead)

    # -- shutdown -----------------------------------------------------------
    def delete_keys(self) -> int:
        """Delete every key of this run; returns how many."""
        n = 0
        batch: list[bytes] = []
        for key in self.state.scan_keys(self.keys.pattern):
            batch.append(key)
            if len(batch) >= 500:
                n += int(self.state.delete(*batch))
                batch.clear()
        if batch:
            n += int(self.state.delete(*batch))
        return n

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every worker of the run, delete its keys, release the backends."""
        if self._closed.is_set() or os.getpid() != self._owner_pid:
            # A forked child (e.g. a stdlib Pool worker) exits through the
            # same atexit hooks; the run belongs to the process that made it.
            return
        self._closed.set()
        k = self.keys
        with contextlib.suppress(*CONNECTION_ERRORS, StateError):
            self.state.delete(k.client)
            for host in self.state.smembers(k.hosts):
                self.state.rpush(k.host_ctl(host.decode()), dumps_message(msgs.STOP_HOST, self.authkey))
            deadline = time.monotonic() + timeout
            while self.state.scard(k.hosts) and time.monotonic() < deadline:
                time.sleep(0.02)
            self.delete_keys()
        if self._compute_ready.is_set() and self._compute is not None:
            self._compute.shutdown()
        with contextlib.suppress(Exception):
            self.state.close()
        if self.server is not None:
            self.server.stop()
        if self.host_memory is not None:
            # The run's segment files go with its keys (processes still
            # mapping one keep their mapping until they drop it).
            hostmem.remove_run_dir(self.host_memory)
