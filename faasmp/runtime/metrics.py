"""In-process counters of IPC, synchronisation and Redis latency, shipped in batches.

Every faasmp process (the client, each remote Process, each pool worker)
keeps one :class:`Registry`.  The API modules bump a :class:`Counter` per
object and operation (a Pipe end's sends, a Lock's acquisitions, a managed
dict's ``__setitem__`` calls): an attribute increment, never a Redis write.
The state backend times one Redis command in :data:`SAMPLE_EVERY` and adds it
to a per-command histogram.

The counters are cumulative for the life of the process.  A remote process
ships a :class:`faasmp.stats.MetricsReport` with all of them every heartbeat
interval (only if something changed) and once more when it ends; the client
adds its own at each heartbeat.  A report replaces the previous one of the
same process, so a lost or repeated report never double-counts.

Cost (measured, see docs/observability.md): a counter bump is ~60 ns, a
blocked-time measurement adds two ``perf_counter`` calls; against a pipe
round trip of ~100 us that is well under 1 %.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by report(): a worker defines these records when it first reports, not at start
    from ..stats import MetricsReport

logger = logging.getLogger(__name__)

#: One Redis command in this many is timed (per backend connection set).
SAMPLE_EVERY = 16
#: Upper bounds (seconds) of the latency histogram's buckets; the last is open.
LATENCY_BOUNDS = (
    50e-6,
    100e-6,
    200e-6,
    500e-6,
    1e-3,
    2e-3,
    5e-3,
    10e-3,
    20e-3,
    50e-3,
    100e-3,
    float("inf"),
)


#: Commands whose time is mostly waiting for data: never sampled as latency.
BLOCKING = frozenset({"BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "SUBSCRIBE"})


class Counter:
    """Operations, bytes and seconds waited for one (object, operation) of one process."""

    __slots__ = ("count", "kind", "name", "nbytes", "op", "wait")

    def __init__(self, kind: str, name: str, op: str) -> None:
        self.kind, self.name, self.op = kind, name, op
        self.count = 0
        self.nbytes = 0
        self.wait = 0.0

    def add(self, nbytes: int = 0) -> None:
        """Count one operation of *nbytes* (not thread-exact: a lost increment is acceptable)."""
        self.count += 1
        self.nbytes += nbytes

    def since(self, t0: float, nbytes: int = 0) -> None:
        """Count one operation that started blocking at ``perf_counter()`` *t0*."""
        self.count += 1
        self.nbytes += nbytes
        self.wait += time.perf_counter() - t0


class Histogram:
    """Latency samples of one Redis command kind (buckets of :data:`LATENCY_BOUNDS`)."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.buckets = [0] * len(LATENCY_BOUNDS)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        for i, bound in enumerate(LATENCY_BOUNDS):
            if seconds <= bound:
                self.buckets[i] += 1
                return


class Sampler:
    """Times one Redis command in :data:`SAMPLE_EVERY` (the state backend's hook)."""

    __slots__ = ("_left", "_registry")

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._left = SAMPLE_EVERY

    def due(self) -> bool:
        """True once every :data:`SAMPLE_EVERY` calls: time this command."""
        self._left -= 1
        if self._left > 0:
            return False
        self._left = SAMPLE_EVERY
        return True

    def timed(
        self, command: object, fn: Callable[..., Any], args: tuple[Any, ...], options: dict[str, Any]
    ) -> Any:
        """``fn(*args, **options)`` (Redis *command*), its latency recorded unless it blocks."""
        t0 = time.perf_counter()
        reply = fn(*args, **options)
        seconds = time.perf_counter() - t0
        name = (command.decode() if isinstance(command, bytes) else str(command)).upper()
        if name not in BLOCKING:  # a blocking pop's time is waiting, not latency
            self._registry.latency(name).add(seconds)
        return reply


class Registry:
    """The counters of this process (reset in a forked child, see :func:`_after_fork`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}
        #: Who these counters belong to: a process id (``MainProcess`` on the client).
        self.source = "MainProcess"
        self.process = "MainProcess"
        self.host = ""
        self._shipped: tuple[int, int] = (0, 0)
        self._shipper: threading.Thread | None = None
        self._stop = threading.Event()

    def counter(self, kind: str, name: str, op: str) -> Counter:
        """The counter of *op* on object *name* of *kind* (made on first use; cache it)."""
        key = (kind, name, op)
        c = self._counters.get(key)
        if c is None:
            with self._lock:
                c = self._counters.setdefault(key, Counter(kind, name, op))
        return c

    def latency(self, command: str) -> Histogram:
        """The latency histogram of Redis *command* (made on first use)."""
        h = self._latency.get(command)
        if h is None:
            with self._lock:
                h = self._latency.setdefault(command, Histogram())
        return h

    def sampler(self) -> Sampler:
        """A sampler for one state backend (its own 1-in-N count, this registry's histograms)."""
        return Sampler(self)

    def reset(self, source: str, process: str, host: str = "") -> None:
        """Zero every counter (in place: objects keep their cached counters) and rename the owner."""
        with self._lock:
            for c in self._counters.values():
                c.count, c.nbytes, c.wait = 0, 0, 0.0
            for h in self._latency.values():
                h.count, h.total, h.buckets = 0, 0.0, [0] * len(LATENCY_BOUNDS)
            self.source, self.process, self.host = source, process, host
            self._shipped = (0, 0)

    def report(self, t: float) -> MetricsReport:
        """A snapshot of every counter (cumulative since the process started)."""
        from ..stats import IpcStat, LatencyStat, MetricsReport  # noqa: PLC0415 - see the imports

        with self._lock:
            counters = list(self._counters.values())
            hists = list(self._latency.items())
        ipc = tuple(
            IpcStat(self.source, self.process, c.kind, c.name, c.op, c.count, c.nbytes, c.wait)
            for c in counters
            if c.count
        )
        lat = tuple(
            LatencyStat(self.source, cmd, h.count, h.total, tuple(h.buckets)) for cmd, h in hists if h.count
        )
        return MetricsReport(self.source, self.process, self.host, t, ipc, lat)

    def changed(self) -> bool:
        """Whether anything was counted since the last :meth:`mark_shipped`."""
        return self.signature() != self._shipped

    def mark_shipped(self) -> None:
        """Remember the current counts as shipped (see :meth:`changed`)."""
        self._shipped = self.signature()

    def signature(self) -> tuple[int, int]:
        """Changes whenever something is counted (total operations, total latency samples)."""
        return (
            sum(c.count for c in list(self._counters.values())),
            sum(h.count for h in list(self._latency.values())),
        )

    # -- shipping from a remote process --------------------------------------
    def ship(self, push: Callable[[MetricsReport], None], clock: Callable[[], float]) -> bool:
        """Push a report if anything changed; True if one was pushed."""
        if not self.changed():
            return False
        self.mark_shipped()
        push(self.report(clock()))
        return True

    def start_shipping(
        self, push: Callable[[MetricsReport], None], clock: Callable[[], float], interval: float
    ) -> None:
        """Ship a report every *interval* seconds from a daemon thread (once per process)."""
        if self._shipper is not None and self._shipper.is_alive():
            return
        self._stop = threading.Event()

        def loop(stop: threading.Event) -> None:
            while not stop.wait(interval):
                try:
                    self.ship(push, clock)
                except Exception:  # noqa: BLE001 - statistics must never break the program
                    logger.debug("faasmp: could not ship metrics", exc_info=True)

        self._shipper = threading.Thread(target=loop, args=(self._stop,), name="faasmp-metrics", daemon=True)
        self._shipper.start()

    def final_report(self, clock: Callable[[], float]) -> MetricsReport | None:
        """Stop the shipping thread; the last report to ship, if anything changed (a process' end)."""
        self._stop.set()
        if not self.changed():
            return None
        self.mark_shipped()
        return self.report(clock())


#: The registry of this process.
REGISTRY = Registry()


def _after_fork() -> None:
    # A forked child starts with its parent's counts; they are not its own.
    REGISTRY._lock = threading.Lock()
    REGISTRY._shipper = None
    REGISTRY.reset(f"pid{os.getpid()}", f"pid{os.getpid()}")


os.register_at_fork(after_in_child=_after_fork)


class Shipper:
    """Ships a remote process' counters to the client's run events (see :func:`ship_to_client`)."""

    def __init__(self, state: Any, events_key: str, authkey: bytes, offset: float) -> None:
        self._state, self._events, self._authkey, self._offset = state, events_key, authkey, offset

    def clock(self) -> float:
        """Now, on the client's clock."""
        return time.time() + self._offset

    def push(self, report: MetricsReport) -> None:
        """RPUSH *report* (signed) to the run's events, which the client's monitor reads."""
        from .call import dumps_message  # noqa: PLC0415

        self._state.rpush(self._events, dumps_message(report, self._authkey))

    def ship_last(self) -> None:
        """Ship the process' last report, if anything changed since the previous one (never raises).

        A process that counted nothing (no IPC, too few commands to sample)
        sends nothing: it may never have opened a connection.
        """
        report = REGISTRY.final_report(self.clock)
        if report is not None:
            try:
                self.push(report)
            except Exception:  # noqa: BLE001 - statistics must not change the exit of a process
                logger.debug("faasmp: could not ship the last metrics", exc_info=True)


def ship_to_client(
    state: Any, events_key: str, authkey: bytes, *, source: str, host: str, interval: float, offset: float
) -> Shipper:
    """In a remote process: ship this process' counters to the client's run events.

    Resets the counters to *source* (a process id or a slot id) and ships a
    report every *interval* seconds (the heartbeat interval) when something
    changed; at its end a process queues its last report with
    :meth:`Shipper.push_last`.  *offset* turns local time into the client's clock.
    """
    REGISTRY.reset(source, source, host)
    shipper = Shipper(state, events_key, authkey, offset)
    REGISTRY.start_shipping(shipper.push, shipper.clock, interval)
    return shipper


def write_timing(fd: int, timing: dict[str, float | int]) -> None:
    """In a Process' child: hand how it ran to its slot through the pipe *fd* (then closed)."""
    try:
        os.write(fd, json.dumps(timing).encode())
    except OSError:
        pass  # the slot is gone: nobody will record it
    finally:
        os.close(fd)


def read_timing(fd: int) -> dict[str, float | int]:
    """In the slot, once its child exited: what :func:`write_timing` sent (empty if it was killed).

    Never blocks: the child wrote before it exited, and a grandchild it
    forked may still hold the write end open.
    """
    chunks = []
    try:
        os.set_blocking(fd, False)
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except BlockingIOError:
        pass  # all there is
    finally:
        os.close(fd)
    try:
        timing = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return {}
    return {k: v for k, v in timing.items() if isinstance(k, str) and isinstance(v, int | float)}


def counter(kind: str, name: str, op: str) -> Counter:
    """This process' counter of *op* on *name* (see :meth:`Registry.counter`)."""
    return REGISTRY.counter(kind, name, op)
