"""Per-invocation statistics: a data model and an event stream, no widgets.

Every task a faasmp job runs yields a :class:`TaskRecord` with timestamps on
the client's clock (worker clocks are corrected through the Redis server's
clock) and its phases:

========== ==============================================================
serialize  pickling the task on the client
upload     writing it to Redis
invoke     waiting for a worker to take it (includes a cold start)
setup      unpickling the function and arguments on the worker
run        the user's code
join       from the worker's end of the task until the client has the result
========== ==============================================================

Subscribe with :func:`subscribe` to receive events while work runs
(:class:`JobStarted`, :class:`TaskFinished`, :class:`JobFinished`,
:class:`HostStarted`, :class:`LatencySample`); :func:`last` returns the
records of the last finished job.  The module-level functions use the
default context; a context's own collector is ``ctx.stats``.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger(__name__)

PHASES = ("serialize", "upload", "invoke", "setup", "run", "join")


@dataclasses.dataclass(frozen=True)
class TaskRecord:
    """One task (a Pool chunk or a Process) from submit to result."""

    job_id: str
    task_id: str
    kind: str  # "pool" or "process"
    worker: str
    host: str
    submitted: float
    uploaded: float
    started: float
    run_start: float
    run_end: float
    received: float
    serialize_s: float
    peak_rss: int
    cpu_s: float
    ok: bool
    n_items: int = 1

    @property
    def phases(self) -> dict[str, float]:
        """Seconds spent in each phase (see the module docstring)."""
        return {
            "serialize": self.serialize_s,
            "upload": max(self.uploaded - self.submitted - self.serialize_s, 0.0),
            "invoke": max(self.started - self.uploaded, 0.0),
            "setup": max(self.run_start - self.started, 0.0),
            "run": max(self.run_end - self.run_start, 0.0),
            "join": max(self.received - self.run_end, 0.0),
        }

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update({f"{k}_s": v for k, v in self.phases.items() if k != "serialize"})
        return d


@dataclasses.dataclass(frozen=True)
class JobStarted:
    job_id: str
    kind: str
    n_tasks: int
    t: float


@dataclasses.dataclass(frozen=True)
class TaskFinished:
    record: TaskRecord


@dataclasses.dataclass(frozen=True)
class JobFinished:
    job_id: str
    t: float
    ok: bool


@dataclasses.dataclass(frozen=True)
class HostStarted:
    """A function invocation began hosting warm worker slots."""

    host_id: str
    invoked: float
    started: float

    @property
    def cold_start(self) -> float:
        return self.started - self.invoked


@dataclasses.dataclass(frozen=True)
class LatencySample:
    """One Redis round trip measured by the client."""

    t: float
    rtt: float


Event = JobStarted | TaskFinished | JobFinished | HostStarted | LatencySample
Listener = Callable[[Event], None]


class StatsCollector:
    """Keeps recent records and fans events out to subscribers (thread-safe)."""

    def __init__(self, max_records: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._records: deque[TaskRecord] = deque(maxlen=max_records)
        self._hosts: deque[HostStarted] = deque(maxlen=10_000)
        self._latency: deque[LatencySample] = deque(maxlen=10_000)
        self._jobs: dict[str, JobStarted] = {}
        self._last_job: str | None = None
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Listener:
        """Call *listener(event)* for every event from now on; returns it."""
        with self._lock:
            self._listeners.append(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def emit(self, event: Event) -> None:
        with self._lock:
            if isinstance(event, TaskFinished):
                self._records.append(event.record)
            elif isinstance(event, JobStarted):
                self._jobs[event.job_id] = event
                if len(self._jobs) > 10_000:
                    self._jobs.pop(next(iter(self._jobs)))
            elif isinstance(event, JobFinished):
                self._last_job = event.job_id
            elif isinstance(event, HostStarted):
                self._hosts.append(event)
            elif isinstance(event, LatencySample):
                self._latency.append(event)
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must not break work
                logger.exception("faasmp stats listener %r failed", listener)

    def records(self, job_id: str | None = None) -> list[TaskRecord]:
        """All kept records, or those of one job."""
        with self._lock:
            recs = list(self._records)
        return recs if job_id is None else [r for r in recs if r.job_id == job_id]

    def last(self) -> list[TaskRecord]:
        """Records of the most recently finished job."""
        return self.records(self._last_job) if self._last_job else []

    def hosts(self) -> list[HostStarted]:
        with self._lock:
            return list(self._hosts)

    def latencies(self) -> list[LatencySample]:
        with self._lock:
            return list(self._latency)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._hosts.clear()
            self._latency.clear()
            self._jobs.clear()
            self._last_job = None

    def to_pandas(self, records: Iterable[TaskRecord] | None = None) -> Any:
        """The records as a pandas DataFrame (needs pandas)."""
        try:
            import pandas as pd  # noqa: PLC0415
        except ImportError as exc:
            raise ImportError("faasmp.stats.to_pandas() needs pandas: pip install pandas") from exc
        recs = self.records() if records is None else list(records)
        return pd.DataFrame([r.as_dict() for r in recs])


def summarize(records: Iterable[TaskRecord]) -> dict[str, dict[str, float]]:
    """Per-phase mean, median and max in seconds."""
    recs = list(records)
    out: dict[str, dict[str, float]] = {}
    for phase in PHASES:
        vals = [r.phases[phase] for r in recs]
        if vals:
            out[phase] = {
                "mean": statistics.fmean(vals),
                "p50": statistics.median(vals),
                "max": max(vals),
            }
    return out


def format_summary(records: Iterable[TaskRecord]) -> str:
    """A text table of :func:`summarize`, in milliseconds."""
    recs = list(records)
    summary = summarize(recs)
    lines = [f"{'phase':<10} {'mean ms':>10} {'p50 ms':>10} {'max ms':>10}"]
    for phase, s in summary.items():
        lines.append(f"{phase:<10} {s['mean'] * 1e3:>10.2f} {s['p50'] * 1e3:>10.2f} {s['max'] * 1e3:>10.2f}")
    lines.append(f"({len(recs)} task records)")
    return "\n".join(lines)


def _collector() -> StatsCollector:
    from .context import default_context  # noqa: PLC0415

    return default_context().stats


def subscribe(listener: Listener) -> Listener:
    """Subscribe *listener* to the default context's events."""
    return _collector().subscribe(listener)


def unsubscribe(listener: Listener) -> None:
    _collector().unsubscribe(listener)


def records(job_id: str | None = None) -> list[TaskRecord]:
    return _collector().records(job_id)


def last() -> list[TaskRecord]:
    """Records of the last finished job of the default context."""
    return _collector().last()


def hosts() -> list[HostStarted]:
    return _collector().hosts()


def latencies() -> list[LatencySample]:
    return _collector().latencies()


def to_pandas(records: Iterable[TaskRecord] | None = None) -> Any:
    return _collector().to_pandas(records)
