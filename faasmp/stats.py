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

A Process is a task too (``kind="process"``): *submitted* is ``start()``,
*started* the moment a worker took it, *run_start*/*run_end* bracket its
``run()``, *received* the moment the client saw it exit; ``exitcode`` and
``out_bytes`` (what it printed) come with it.

Besides tasks, every process counts its IPC and synchronisation operations
and samples the latency of its Redis commands (:mod:`faasmp.runtime.metrics`);
those arrive as :class:`MetricsReport` events (:func:`ipc`,
:func:`redis_latency`).

Subscribe with :func:`subscribe` to receive events while work runs
(:class:`JobStarted`, :class:`TaskFinished`, :class:`JobFinished`,
:class:`HostStarted`, :class:`ProcessStarted`, :class:`MetricsReport`);
:func:`last` returns the records of the last
finished job.  The module-level functions use the
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
    #: Bytes the task wrote to stdout/stderr (Processes).
    out_bytes: int = 0
    #: The exit code of a Process (None for Pool tasks).
    exitcode: int | None = None
    #: The Process' name (empty for Pool tasks).
    name: str = ""

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
    """One Redis round trip measured by the client.

    faasmp itself no longer emits it (it timed the client's heartbeat
    pipeline, not the program's operations): Redis latency now comes as
    :class:`LatencyStat` in each :class:`MetricsReport`.  Kept so that
    listeners and dashboards fed with it keep working.
    """

    t: float
    rtt: float


@dataclasses.dataclass(frozen=True)
class ProcessStarted:
    """``Process.start()`` was called (the process is queued for a worker)."""

    proc_id: str
    name: str
    t: float


@dataclasses.dataclass(frozen=True)
class IpcStat:
    """Cumulative count of one operation on one IPC or sync object, in one process.

    *kind* is ``pipe``, ``queue``, ``lock``, ``rlock``, ``semaphore``,
    ``condition``, ``event``, ``barrier`` or ``manager``; *op* the operation
    (``send``/``recv``, ``put``/``get``, ``acquire``, ``wait``, a manager
    method...).  *wait_s* is the time spent blocked in it.
    """

    source: str
    process: str
    kind: str
    name: str
    op: str
    count: int
    nbytes: int
    wait_s: float


@dataclasses.dataclass(frozen=True)
class LatencyStat:
    """Sampled latencies of one Redis command kind in one process (cumulative).

    *buckets* count samples up to each bound of
    :data:`faasmp.runtime.metrics.LATENCY_BOUNDS` (the last one open).
    """

    source: str
    command: str
    count: int
    total_s: float
    buckets: tuple[int, ...]

    @property
    def mean_s(self) -> float:
        return self.total_s / self.count if self.count else 0.0


@dataclasses.dataclass(frozen=True)
class MetricsReport:
    """All counters of one process at time *t* (replaces its previous report)."""

    source: str
    process: str
    host: str
    t: float
    ipc: tuple[IpcStat, ...]
    latency: tuple[LatencyStat, ...]


def subtract(report: MetricsReport, base: MetricsReport) -> MetricsReport:
    """What *report* counted since *base* (an earlier report of the same process)."""
    before = {(b.kind, b.name, b.op): b for b in base.ipc}
    ipc = []
    for s in report.ipc:
        b = before.get((s.kind, s.name, s.op))
        if b is not None:
            s = dataclasses.replace(
                s, count=s.count - b.count, nbytes=s.nbytes - b.nbytes, wait_s=s.wait_s - b.wait_s
            )
        if s.count > 0:
            ipc.append(s)
    lat_before = {b.command: b for b in base.latency}
    lat = []
    for ls in report.latency:
        lb = lat_before.get(ls.command)
        if lb is not None:
            buckets = tuple(x - y for x, y in zip(ls.buckets, lb.buckets, strict=False))
            ls = dataclasses.replace(
                ls, count=ls.count - lb.count, total_s=ls.total_s - lb.total_s, buckets=buckets
            )
        if ls.count > 0:
            lat.append(ls)
    return dataclasses.replace(report, ipc=tuple(ipc), latency=tuple(lat))


def process_record(
    proc_id: str,
    name: str,
    submitted: float,
    serialize_s: float,
    uploaded: float,
    info: dict[str, str],
    received: float,
    exitcode: int | None = None,
) -> TaskRecord:
    """The :class:`TaskRecord` of a Process from its client-side times and its Redis record *info*.

    A process that never ran (cancelled, or its worker died) has no run
    times: its phases after ``invoke`` are zero.  *exitcode* (what the client
    saw) stands in when *info* has none.
    """

    def num(field: str, default: float = 0.0) -> float:
        try:
            return float(info[field])
        except (KeyError, ValueError):
            return default

    started = num("started", uploaded)
    run_start = num("run_start", started)
    run_end = num("run_end", run_start)
    try:
        exitcode = int(info["exitcode"])
    except (KeyError, ValueError):
        pass  # keep the client's
    return TaskRecord(
        job_id=proc_id,
        task_id=proc_id,
        kind="process",
        worker=info.get("slot", ""),
        host=info.get("host", ""),
        submitted=submitted,
        uploaded=uploaded,
        started=started,
        run_start=run_start,
        run_end=run_end,
        received=max(received, run_end),
        serialize_s=serialize_s,
        peak_rss=int(num("peak_rss")),
        cpu_s=num("cpu_s"),
        ok=exitcode == 0,
        out_bytes=int(num("out_bytes")),
        exitcode=exitcode,
        name=name,
    )


Event = JobStarted | TaskFinished | JobFinished | HostStarted | LatencySample | ProcessStarted | MetricsReport
Listener = Callable[[Event], None]


class StatsCollector:
    """Keeps recent records and fans events out to subscribers (thread-safe)."""

    def __init__(self, max_records: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._records: deque[TaskRecord] = deque(maxlen=max_records)
        self._hosts: deque[HostStarted] = deque(maxlen=10_000)
        self._latency: deque[LatencySample] = deque(maxlen=10_000)
        self._jobs: dict[str, JobStarted] = {}
        self._reports: dict[str, MetricsReport] = {}
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
            elif isinstance(event, MetricsReport):
                old = self._reports.get(event.source)
                if old is None or old.t <= event.t:
                    self._reports[event.source] = event
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

    def reports(self) -> list[MetricsReport]:
        """The latest :class:`MetricsReport` of every process."""
        with self._lock:
            return list(self._reports.values())

    def ipc(self) -> list[IpcStat]:
        """IPC and sync counters of every process (see :class:`IpcStat`)."""
        return [s for r in self.reports() for s in r.ipc]

    def redis_latency(self) -> list[LatencyStat]:
        """Sampled Redis latencies by command, per process (see :class:`LatencyStat`)."""
        return [s for r in self.reports() for s in r.latency]

    def clear(self) -> None:
        with self._lock:
            self._reports.clear()
            self._records.clear()
            self._hosts.clear()
            self._latency.clear()
            self._jobs.clear()
            self._last_job = None

    def to_pandas(self, records: Iterable[TaskRecord] | None = None, *, table: str = "tasks") -> Any:
        """A pandas DataFrame (needs pandas) of one *table*.

        ``"tasks"``: the task and process records (or *records*); ``"ipc"``:
        :meth:`ipc`; ``"latency"``: :meth:`redis_latency`; ``"utilisation"``:
        :func:`utilisation` of the records, per worker.
        """
        try:
            import pandas as pd  # noqa: PLC0415
        except ImportError as exc:
            raise ImportError("faasmp.stats.to_pandas() needs pandas: pip install pandas") from exc
        recs = self.records() if records is None else list(records)
        rows: list[dict[str, Any]]
        if table == "tasks":
            rows = [r.as_dict() for r in recs]
        elif table == "ipc":
            rows = [dataclasses.asdict(s) for s in self.ipc()]
        elif table == "latency":
            rows = [
                {"source": s.source, "command": s.command, "count": s.count, "mean_s": s.mean_s}
                for s in self.redis_latency()
            ]
        elif table == "utilisation":
            rows = [dataclasses.asdict(u) for u in utilisation(recs)]
        else:
            raise ValueError(f"unknown table {table!r}; known: {list(TABLES)}")
        return pd.DataFrame(rows)


#: The tables :meth:`StatsCollector.to_pandas` knows.
TABLES = ("tasks", "ipc", "latency", "utilisation")


@dataclasses.dataclass(frozen=True)
class Utilisation:
    """How busy one worker (or, with ``worker == ""``, one host) was over a time span."""

    host: str
    worker: str
    start: float
    end: float
    busy_s: float
    tasks: int

    @property
    def busy_fraction(self) -> float:
        span = self.end - self.start
        return min(self.busy_s / span, 1.0) if span > 0 else 0.0


def _merged_length(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by *intervals* (overlaps counted once)."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def utilisation(records: Iterable[TaskRecord]) -> list[Utilisation]:
    """Busy time of each worker and host between the first task start and the last task end.

    A worker is busy from a task's ``started`` to its ``run_end`` (setup and
    run); a host is busy while any of its workers is (so its busy fraction
    says how much of the span it did anything, not how many cores it used).
    Idle time is where more work per worker, or fewer workers, would help.
    """
    recs = [r for r in records if r.run_end >= r.started]
    if not recs:
        return []
    start = min(r.started for r in recs)
    end = max(r.run_end for r in recs)
    by_worker: dict[tuple[str, str], list[tuple[float, float]]] = {}
    by_host: dict[str, list[tuple[float, float]]] = {}
    for r in recs:
        by_worker.setdefault((r.host, r.worker), []).append((r.started, r.run_end))
        by_host.setdefault(r.host, []).append((r.started, r.run_end))
    out = [
        Utilisation(host, worker, start, end, _merged_length(iv), len(iv))
        for (host, worker), iv in sorted(by_worker.items())
    ]
    for host, iv in sorted(by_host.items()):
        out.append(Utilisation(host, "", start, end, _merged_length(iv), len(iv)))
    return out


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


def busy_over_time(
    records: Iterable[TaskRecord],
    bins: int = 30,
    host: str | None = None,
    *,
    span: tuple[float, float] | None = None,
) -> tuple[list[float], list[float]]:
    """Workers busy over time: (bin start times, mean number of busy workers in each bin).

    Busy is as in :func:`utilisation`; with *host*, only that host's workers.
    Against the number of workers it shows when the pool was idle.  The bins
    cover the records' own span (first start to last end) unless *span*
    ``(start, end)`` is given: pass the span of all hosts to get the same
    bins for each host (a host idle for part of the run then shows zeros).
    """
    recs = [r for r in records if r.run_end >= r.started and (host is None or r.host == host)]
    if not recs or bins < 1:
        return [], []
    start = min(r.started for r in recs) if span is None else span[0]
    end = max(r.run_end for r in recs) if span is None else span[1]
    width = (end - start) / bins if end > start else 1.0
    busy = [0.0] * bins
    for r in recs:
        # Offsets from the start: epoch seconds (~1.7e9) keep only ~0.2 µs,
        # a visible error against millisecond bins.
        a, b = r.started - start, r.run_end - start
        first, last = int(a / width), min(int(b / width), bins - 1)
        for i in range(max(first, 0), last + 1):
            lo, hi = i * width, (i + 1) * width
            busy[i] += max(min(b, hi) - max(a, lo), 0.0) / width
    return [start + i * width for i in range(bins)], busy


def host_lines(workers: Iterable[Utilisation]) -> list[str]:
    """Per host, from its workers' :func:`utilisation` rows: workers, tasks and the mean share busy.

    ``host 3fa2c1: 4 worker(s), 40 task(s), 83% busy``, the line the dashboard
    puts above the host's band: its workers' busy time over the span, divided
    by workers x span (not a host row's "any worker busy" fraction).
    """
    by_host: dict[str, list[Utilisation]] = {}
    for u in workers:
        if u.worker:
            by_host.setdefault(u.host, []).append(u)
    out = []
    for host, us in by_host.items():
        span = us[0].end - us[0].start
        share = min(sum(u.busy_s for u in us) / (len(us) * span), 1.0) if span > 0 else 0.0
        out.append(host_line(host, len(us), sum(u.tasks for u in us), share))
    return out


def host_line(host: str, workers: int, tasks: int, busy_share: float) -> str:
    """``host 3fa2c1: 4 worker(s), 40 task(s), 83% busy`` (*busy_share* from 0 to 1)."""
    return f"host {host or '?'}: {workers} worker(s), {tasks} task(s), {busy_share * 100:.0f}% busy"


def ipc_table(stats: Iterable[IpcStat]) -> list[tuple[str, str, str, int, int, float]]:
    """IPC/sync counters summed over processes: (kind, name, op, count, bytes, wait seconds)."""
    sums: dict[tuple[str, str, str], list[float]] = {}
    for s in stats:
        row = sums.setdefault((s.kind, s.name, s.op), [0, 0, 0.0])
        row[0] += s.count
        row[1] += s.nbytes
        row[2] += s.wait_s
    return [(k, n, op, int(v[0]), int(v[1]), v[2]) for (k, n, op), v in sorted(sums.items())]


def latency_table(stats: Iterable[LatencyStat]) -> list[tuple[str, int, float, float]]:
    """Sampled Redis latency by command over processes: (command, samples, mean s, ~p90 s)."""
    from .runtime.metrics import LATENCY_BOUNDS  # noqa: PLC0415

    merged: dict[str, tuple[int, float, list[int]]] = {}
    for s in stats:
        n, total, buckets = merged.get(s.command, (0, 0.0, [0] * len(s.buckets)))
        summed = [a + b for a, b in zip(buckets, s.buckets, strict=False)]
        merged[s.command] = (n + s.count, total + s.total_s, summed)
    out = []
    for cmd, (n, total, buckets) in sorted(merged.items(), key=lambda kv: -kv[1][0]):
        seen, p90 = 0, LATENCY_BOUNDS[-2]
        for bound, k in zip(LATENCY_BOUNDS, buckets, strict=False):
            seen += k
            if seen >= 0.9 * n:
                p90 = bound
                break
        out.append((cmd, n, total / n if n else 0.0, p90))
    return out


def format_report(collector: StatsCollector, records: Iterable[TaskRecord] | None = None) -> str:
    """Everything in one text: phases, processes, IPC/sync counters, Redis latency, utilisation.

    What ``%%faas --stats`` and ``python -m faasmp run --stats`` print.
    """
    recs = collector.records() if records is None else list(records)
    parts = [format_summary(recs)]
    procs = [r for r in recs if r.kind == "process"]
    if procs:
        lines = [f"{'process':<24} {'exit':>5} {'run ms':>10} {'output B':>9}  worker"]
        for r in procs[-20:]:
            lines.append(
                f"{(r.name or r.task_id)[:24]:<24} {r.exitcode!s:>5} {r.phases['run'] * 1e3:>10.1f} "
                f"{r.out_bytes:>9}  {r.worker}"
            )
        parts.append("\n".join(lines))
    ipc = ipc_table(collector.ipc())
    if ipc:
        lines = [f"{'object':<30} {'op':<12} {'count':>8} {'bytes':>11} {'blocked ms':>11}"]
        for kind, name, op, n, nbytes, wait in ipc[:40]:
            label = f"{kind} {name}"[:30]
            lines.append(f"{label:<30} {op[:12]:<12} {n:>8} {nbytes:>11} {wait * 1e3:>11.1f}")
        parts.append("\n".join(lines))
    lat = latency_table(collector.redis_latency())
    if lat:
        lines = [f"{'redis command':<16} {'samples':>8} {'mean us':>9} {'p90 <= us':>10}"]
        for cmd, n, mean, p90 in lat[:12]:
            lines.append(f"{cmd[:16]:<16} {n:>8} {mean * 1e6:>9.0f} {p90 * 1e6:>10.0f}")
        parts.append("\n".join(lines))
    util = [u for u in utilisation(recs) if u.worker]
    if util:
        lines = [f"{'worker':<12} {'tasks':>6} {'busy %':>7}"]
        for u in util[:32]:
            lines.append(f"{u.worker:<12} {u.tasks:>6} {u.busy_fraction * 100:>6.0f}%")
        lines.extend(host_lines(util))
        parts.append("\n".join(lines))
    from .advisor import verdict  # noqa: PLC0415

    parts.append("advisor: " + verdict(recs))
    return "\n\n".join(parts)


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


def to_pandas(records: Iterable[TaskRecord] | None = None, *, table: str = "tasks") -> Any:
    """See :meth:`StatsCollector.to_pandas`."""
    return _collector().to_pandas(records, table=table)


def reports() -> list[MetricsReport]:
    """The latest counters report of every process of the default context."""
    return _collector().reports()


def ipc() -> list[IpcStat]:
    """IPC and sync counters of the default context's processes."""
    return _collector().ipc()


def redis_latency() -> list[LatencyStat]:
    """Sampled Redis command latencies of the default context's processes."""
    return _collector().redis_latency()


def report() -> str:
    """:func:`format_report` of the default context."""
    return format_report(_collector())
