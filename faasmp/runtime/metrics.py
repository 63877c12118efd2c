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

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from ..stats import IpcStat, LatencyStat, MetricsReport

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
        h = self._latency.get(command)
        if h is None:
            with self._lock:
                h = self._latency.setdefault(command, Histogram())
        return h

    def sampler(self) -> Sampler:
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
        return self._signature() != self._shipped

    def mark_shipped(self) -> None:
        self._shipped = self._signature()

    def _signature(self) -> tuple[int, int]:
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

    def final_ship(self, push: Callable[[MetricsReport], None], clock: Callable[[], float]) -> None:
        """Stop the shipping thread and ship what is left (at the end of a process)."""
        self._stop.set()
        with contextlib.suppress(Exception):
            self.ship(push, clock)


#: The registry of this process.
REGISTRY = Registry()


def _after_fork() -> None:
    # A forked child starts with its parent's counts; they are not its own.
    REGISTRY._lock = threading.Lock()
    REGISTRY._shipper = None
    REGISTRY.reset(f"pid{os.getpid()}", f"pid{os.getpid()}")


os.register_at_fork(after_in_child=_after_fork)


def ship_to_client(
    state: Any, events_key: str, authkey: bytes, *, source: str, host: str, interval: float, offset: float
) -> Callable[[], None]:
    """In a remote process: ship this process' counters to the client's run events.

    Resets the counters to *source* (a process id or a slot id), ships a
    report every *interval* seconds (the heartbeat interval) when something
    changed, and returns the function to call when the process ends (it
    ships the last report).  *offset* turns local time into the client's clock.
    """
    from .call import dumps_message  # noqa: PLC0415

    REGISTRY.reset(source, source, host)

    def push(report: MetricsReport) -> None:
        state.rpush(events_key, dumps_message(report, authkey))

    def clock() -> float:
        return time.time() + offset

    REGISTRY.start_shipping(push, clock, interval)
    return lambda: REGISTRY.final_ship(push, clock)


def counter(kind: str, name: str, op: str) -> Counter:
    """This process' counter of *op* on *name* (see :meth:`Registry.counter`)."""
    return REGISTRY.counter(kind, name, op)
