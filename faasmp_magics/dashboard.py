"""The faasmp dashboard: a data model fed by ``faasmp.stats`` events, and views that draw it.

Nothing here runs or schedules work.  :class:`DashboardModel` consumes the
stats event stream (:class:`~faasmp.stats.JobStarted`,
:class:`~faasmp.stats.TaskFinished`, :class:`~faasmp.stats.JobFinished`,
:class:`~faasmp.stats.HostStarted`, :class:`~faasmp.stats.ProcessStarted`,
:class:`~faasmp.stats.MetricsReport`, :class:`~faasmp.stats.LatencySample`)
and warm pool status snapshots; its listener does O(1) work under a lock,
because events arrive on faasmp's own threads while work runs.  The pure
functions of :mod:`.series` turn a :class:`Snapshot` into plot series,
:mod:`.figure` puts them in a plotly figure, and three views draw them:

* :class:`LiveDashboard` — ipywidgets + one plotly ``FigureWidget``,
  redrawn from a timer thread at most every ``interval`` seconds (never on the
  thread that delivered the event);
* :class:`StaticDashboard` — a text progress line while work runs, then a
  static plotly figure (and the text table) when it ends: for front ends
  without widgets (nbconvert, a kernel without ipywidgets/anywidget);
* :func:`text_report` — the plain text table (IPython in a terminal).

The panels follow the views of the thesis behind the original prototype:
the invocation timeline and a histogram of task start/end times (Fig. 4.2),
per-phase overheads as stacked bars (Table 4.1), Redis latency by command
sampled from the program's own operations (Table 4.2), per-task peak memory
and CPU time; then what the thesis did not show: busy time per worker and,
over time, per host, busy against idle (is more parallelism worth it?), IPC
and synchronisation counters per object
(Pipe, Queue, Lock, Event, manager objects...), and the granularity
advisor's verdict.  Processes are tasks of kind ``"process"``: they appear
on the timeline under their name, from ``start()`` to their exit.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import html
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from faasmp import cost, stats
from faasmp.stats import PHASES, TaskRecord

# The series and the figure live in their own modules; their names are
# re-exported here, where the views (and users of earlier versions) find them.
from .figure import (
    PHASE_COLORS,
    TRACES,
    build_figure,
    figure_bundle,
    static_figure,
    trace_updates,
    update_figure,
)
from .series import (
    BAND,
    HIST_BINS,
    HOST_BINS,
    MAX_BARS_DRAWN,
    MAX_HOSTS_DRAWN,
    MAX_TASKS_DRAWN,
    HostBusy,
    busy_workers,
    histogram,
    host_bands,
    host_busy,
    ipc_bars,
    latency_by_command,
    latency_ms,
    phase_bars,
    resources,
    start_end_histogram,
    timeline,
    utilisation,
    verdict,
    workers_used,
)

__all__ = [
    "BAND",
    "HIST_BINS",
    "HOST_BINS",
    "MAX_BARS_DRAWN",
    "MAX_HOSTS_DRAWN",
    "MAX_TASKS_DRAWN",
    "MIN_INTERVAL",
    "PHASE_COLORS",
    "STATE_COLORS",
    "TRACES",
    "DashboardModel",
    "HostBusy",
    "LiveDashboard",
    "Progress",
    "Snapshot",
    "StaticDashboard",
    "TextView",
    "View",
    "build_figure",
    "busy_workers",
    "details_text",
    "figure_bundle",
    "histogram",
    "host_bands",
    "host_busy",
    "ipc_bars",
    "latency_by_command",
    "latency_ms",
    "phase_bars",
    "plotly_available",
    "prewarm",
    "progress_html",
    "progress_line",
    "resources",
    "start_end_histogram",
    "static_figure",
    "summary_html",
    "text_report",
    "timeline",
    "trace_updates",
    "update_figure",
    "utilisation",
    "verdict",
    "widgets_available",
    "workers_used",
]

logger = logging.getLogger(__name__)

#: Redraws are never more frequent than this (seconds): at most 4 updates/s.
MIN_INTERVAL = 0.25
#: Serializes our background imports of plotly/ipywidgets/numpy: two threads
#: importing the same package tree can see a partially initialized module.
_IMPORT_LOCK = threading.Lock()

STATE_COLORS = {
    "done": "#2ca02c",
    "running": "#1f77b4",
    "queued": "#9e9e9e",
    "failed": "#d62728",
    "cancelled": "#ff7f0e",
}


# -- data model ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Progress:
    """Task counts of the jobs a dashboard follows (a task = a Pool chunk)."""

    total: int
    done: int
    failed: int
    running: int
    queued: int
    cancelled: int
    workers: int
    idle: int
    starting: int

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.cancelled

    @property
    def outstanding(self) -> int:
        return self.running + self.queued


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A consistent copy of a model's data, safe to draw on any thread."""

    t0: float
    now: float
    records: tuple[TaskRecord, ...]
    rtts: tuple[float, ...]
    hosts: tuple[stats.HostStarted, ...]
    progress: Progress
    jobs: int
    status: dict[str, Any]
    #: The latest counters report of each process (IPC, sync, Redis latency).
    reports: tuple[stats.MetricsReport, ...] = ()
    #: Processes started and not yet seen ending.
    running: tuple[stats.ProcessStarted, ...] = ()


class DashboardModel:
    """What a dashboard shows, built from ``faasmp.stats`` events (thread-safe).

    A *cell* model (``follow_all=False``) follows the jobs that start while it
    is open (:meth:`close` stops adopting new jobs; tasks of adopted jobs are
    still counted).  A *pool* model (``follow_all=True``) follows every job.
    """

    def __init__(
        self,
        *,
        follow_all: bool = False,
        t0: float | None = None,
        max_samples: int = 10_000,
        baseline: Sequence[stats.MetricsReport] = (),
    ):
        self.t0 = time.time() if t0 is None else t0
        #: Counters are cumulative per process: what *baseline* (the reports
        #: known when the model was made) counted is not this model's.
        self._baseline = {r.source: r for r in baseline}
        self.follow_all = follow_all
        self._lock = threading.Lock()
        self._open = True
        self._jobs: dict[str, int] = {}
        self._job_done: dict[str, int] = {}
        self._ended: dict[str, bool] = {}
        self._records: list[TaskRecord] = []
        self._rtts: deque[float] = deque(maxlen=max_samples)
        self._hosts: deque[stats.HostStarted] = deque(maxlen=max_samples)
        self._status: dict[str, Any] = {}
        self._was_running = False
        self._version = 0
        self._reports: dict[str, stats.MetricsReport] = {}
        self._running: dict[str, stats.ProcessStarted] = {}

    # Called on faasmp's threads: constant work, no I/O, no widgets.
    def on_event(self, event: stats.Event) -> None:
        """Take one stats event (the ``faasmp.stats.subscribe`` listener)."""
        with self._lock:
            if isinstance(event, stats.TaskFinished):
                rec = event.record
                if rec.job_id not in self._jobs:
                    return
                self._records.append(rec)
                self._job_done[rec.job_id] = self._job_done.get(rec.job_id, 0) + 1
                self._running.pop(rec.task_id, None)
            elif isinstance(event, stats.JobStarted):
                if not (self._open or self.follow_all):
                    return
                self._jobs[event.job_id] = event.n_tasks
            elif isinstance(event, stats.JobFinished):
                if event.job_id not in self._jobs:
                    return
                self._ended[event.job_id] = event.ok
            elif isinstance(event, stats.LatencySample):
                self._rtts.append(event.rtt)
            elif isinstance(event, stats.HostStarted):
                self._hosts.append(event)
            elif isinstance(event, stats.ProcessStarted):
                if event.proc_id not in self._jobs:
                    return
                self._running[event.proc_id] = event
            elif isinstance(event, stats.MetricsReport):
                # Counters are cumulative per process: the cell shows what
                # was counted since the dashboard opened (minus the baseline).
                known = event.source in self._reports or event.source in self._jobs
                if not (self._open or self.follow_all or known):
                    return
                base = self._baseline.get(event.source)
                self._reports[event.source] = event if base is None else stats.subtract(event, base)
            else:
                return
            self._version += 1

    def set_status(self, status: dict[str, Any]) -> None:
        """Record a ``faasmp.warm_pool_status()`` snapshot (workers, idle, queued)."""
        with self._lock:
            if status.get("running"):
                self._was_running = True
            if status != self._status:
                self._status = dict(status)
                self._version += 1

    def close(self) -> None:
        """Stop adopting new jobs (the cell that owns the model has ended)."""
        with self._lock:
            self._open = False
            self._version += 1

    @property
    def pool_stopped(self) -> bool:
        """The warm pool was seen running and is not any more."""
        with self._lock:
            return self._was_running and not self._status.get("running", False)

    @property
    def version(self) -> int:
        """Increases with every change; a view redraws when it differs from the last drawn."""
        return self._version

    @property
    def jobs(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def records(self) -> list[TaskRecord]:
        """The task records of the followed jobs, in arrival order."""
        with self._lock:
            return list(self._records)

    def progress(self) -> Progress:
        with self._lock:
            return self._progress_locked()

    def _progress_locked(self) -> Progress:
        failed = sum(1 for r in self._records if not r.ok)
        done = len(self._records) - failed
        outstanding = cancelled = 0
        for job, n in self._jobs.items():
            left = max(n - self._job_done.get(job, 0), 0)
            if job in self._ended:
                # A job that succeeded ran every task (a record can be missing, not the
                # task); one that failed or was terminated (Ctrl-C) never ran the rest.
                if self._ended[job]:
                    done += left
                else:
                    cancelled += left
            else:
                outstanding += left
        st = self._status
        workers, idle = int(st.get("workers", 0)), int(st.get("idle", 0))
        busy = max(workers - idle, 0) if st else outstanding
        running = min(outstanding, busy)
        return Progress(
            total=sum(self._jobs.values()),
            done=done,
            failed=failed,
            running=running,
            queued=outstanding - running,
            cancelled=cancelled,
            workers=workers,
            idle=idle,
            starting=int(st.get("starting", 0)),
        )

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                t0=self.t0,
                now=time.time(),
                records=tuple(self._records),
                rtts=tuple(self._rtts),
                hosts=tuple(self._hosts),
                progress=self._progress_locked(),
                jobs=len(self._jobs),
                status=dict(self._status),
                reports=tuple(self._reports.values()),
                running=tuple(self._running.values()),
            )


# -- text -----------------------------------------------------------------------------
def progress_line(snap: Snapshot) -> str:
    p = snap.progress
    parts = [
        f"{p.finished}/{p.total} tasks",
        f"done {p.done}",
        f"running {p.running}",
        f"queued {p.queued}",
        f"failed {p.failed}",
    ]
    if p.cancelled:
        parts.append(f"cancelled {p.cancelled}")
    line = " · ".join(parts) + f" · {snap.now - snap.t0:.1f} s"
    used = workers_used(snap)
    if used:
        line += f" · {used} worker(s) ran these tasks"
    if snap.status.get("running"):
        # The warm pool's size at the last poll, not how many ran the tasks:
        # slots come and go (idle timeout, replaced after a kill, still starting).
        line += f" · warm pool now {p.workers} (idle {p.idle}, starting {p.starting})"
    if snap.hosts:
        cold = sorted(h.cold_start for h in snap.hosts)
        line += f" · {len(cold)} invocation(s) started, cold start p50 {cold[len(cold) // 2]:.2f} s"
    return line


def details_text(snap: Snapshot) -> str:
    """Processes, IPC/sync counters, sampled Redis latency, busy time per worker and host, and the verdict."""
    lines: list[str] = []
    for r in [r for r in snap.records if r.kind == "process"][-30:]:
        lines.append(
            f"process {r.name}: exit {r.exitcode}, run {r.phases['run'] * 1e3:.1f} ms, "
            f"output {r.out_bytes} B, worker {r.worker}"
        )
    ipc = stats.ipc_table(s for r in snap.reports for s in r.ipc)
    if ipc:
        lines.append(f"{'IPC / sync object':<30} {'op':<12} {'count':>8} {'bytes':>11} {'blocked ms':>11}")
        for kind, name, op, n, nbytes, wait in ipc[:30]:
            lines.append(f"{f'{kind} {name}'[:30]:<30} {op[:12]:<12} {n:>8} {nbytes:>11} {wait * 1e3:>11.1f}")
    lat = latency_by_command(snap)
    if lat[0]:
        lines.append(
            "Redis latency (sampled): "
            + ", ".join(f"{c} {us:.0f} us" for c, us in zip(lat[0], lat[1], strict=True))
        )
    util = utilisation(snap)
    if util[0]:
        lines.append("busy: " + ", ".join(f"{w} {pct:.0f}%" for w, pct in zip(util[0], util[1], strict=True)))
    lines.extend(h.describe() for h in host_busy(snap)[:MAX_HOSTS_DRAWN])
    if snap.records:
        lines.append(f"advisor: {verdict(snap)}")
    return "\n".join(lines)


def text_report(snap: Snapshot, title: str = "faasmp") -> str:
    """The plain-text dashboard: progress, per-phase table, latency and resources."""
    lines = [f"{title}: {progress_line(snap)}"]
    if snap.records:
        lines.append(stats.format_summary(snap.records))
        rss = max(r.peak_rss for r in snap.records) / 2**20
        cpu = sum(r.cpu_s for r in snap.records)
        lines.append(f"peak memory {rss:.1f} MB per task (max) · CPU {cpu:.2f} s total")
    if snap.rtts:
        ms = sorted(r * 1e3 for r in snap.rtts)
        lines.append(
            f"Redis round trip: p50 {ms[len(ms) // 2]:.2f} ms, max {ms[-1]:.2f} ms ({len(ms)} samples)"
        )
    if snap.records:
        lines.append(cost_line(snap))
    details = details_text(snap)
    if details:
        lines.append(details)
    return "\n".join(lines)


def cost_line(snap: Snapshot) -> str:
    """The estimated cost of the records shown (``faasmp.cost``, the default context's config)."""
    try:
        return cost.cost_line(snap.records)
    except Exception as exc:  # noqa: BLE001 - a bad price table must not break the dashboard
        return f"cost: unavailable ({exc})"


def ipc_html(snap: Snapshot) -> str:
    """IPC and synchronisation counters per object and operation, summed over processes."""
    rows = stats.ipc_table(s for r in snap.reports for s in r.ipc)
    if not rows:
        return ""
    head = "".join(
        f"<th style='padding:0 8px;text-align:{a}'>{h}</th>"
        for h, a in (("object", "left"), ("op", "left"), ("count", "right"), ("bytes", "right"))
    )
    head += "<th style='padding:0 8px;text-align:right'>blocked ms</th>"
    body = "".join(
        f"<tr><td style='padding:0 8px'>{html.escape(kind)} {html.escape(name)}</td>"
        f"<td style='padding:0 8px'>{html.escape(op)}</td>"
        f"<td style='padding:0 8px;text-align:right'>{n}</td>"
        f"<td style='padding:0 8px;text-align:right'>{nbytes}</td>"
        f"<td style='padding:0 8px;text-align:right'>{wait * 1e3:.1f}</td></tr>"
        for kind, name, op, n, nbytes, wait in rows[:40]
    )
    return f"<table class='faasmp-ipc' style='font-size:12px;margin-top:6px'><tr>{head}</tr>{body}</table>"


def processes_html(snap: Snapshot) -> str:
    """One line per Process: name, exit code, phases, output volume, worker."""
    procs = [r for r in snap.records if r.kind == "process"]
    if not procs:
        return ""
    rows = "".join(
        f"<tr><td style='padding:0 8px'>{html.escape(r.name)}</td>"
        f"<td style='padding:0 8px;text-align:right'>{r.exitcode}</td>"
        + "".join(f"<td style='padding:0 8px;text-align:right'>{r.phases[p] * 1e3:.1f}</td>" for p in PHASES)
        + f"<td style='padding:0 8px;text-align:right'>{r.out_bytes}</td>"
        f"<td style='padding:0 8px'>{html.escape(r.worker)}</td></tr>"
        for r in procs[-30:]
    )
    head = "".join(
        f"<th style='padding:0 8px'>{h}</th>" for h in ("process", "exit", *PHASES, "output B", "worker")
    )
    return (
        "<table class='faasmp-processes' style='font-size:12px;margin-top:6px'>"
        f"<tr>{head}</tr>{rows}</table><div style='font-size:11px;color:#777'>phases in ms</div>"
    )


def summary_html(snap: Snapshot) -> str:
    """The per-phase summary (thesis Table 4.1 view) as a small HTML table, then processes and IPC."""
    summary = stats.summarize(snap.records)
    if not summary:
        return "<div style='color:#777'>no task finished yet</div>" + ipc_html(snap)
    head = "".join(f"<th style='padding:0 8px;text-align:right'>{h}</th>" for h in ("mean", "p50", "max"))
    rows = []
    for phase, s in summary.items():
        color = PHASE_COLORS[phase]
        cells = "".join(
            f"<td style='padding:0 8px;text-align:right'>{s[k] * 1e3:.2f}</td>"
            for k in ("mean", "p50", "max")
        )
        rows.append(f"<tr><td style='color:{color};font-weight:bold'>{phase}</td>{cells}</tr>")
    return (
        "<table class='faasmp-phases' style='font-size:12px'>"
        f"<tr><th style='text-align:left'>phase (ms)</th>{head}</tr>{''.join(rows)}</table>"
        f"<div class='faasmp-cost' style='font-size:12px;color:#555'>{html.escape(cost_line(snap))}</div>"
        "<div class='faasmp-advisor' style='font-size:12px;color:#555'>"
        f"advisor: {html.escape(verdict(snap))}</div>" + processes_html(snap) + ipc_html(snap)
    )


def progress_html(snap: Snapshot, title: str) -> str:
    """A header line and a stacked done/running/queued/failed bar."""
    p = snap.progress
    total = max(p.total, 1)
    bar = []
    for name, value in (
        ("done", p.done),
        ("failed", p.failed),
        ("cancelled", p.cancelled),
        ("running", p.running),
        ("queued", p.queued),
    ):
        if value:
            bar.append(
                f"<div title='{name} {value}' style='width:{100 * value / total:.2f}%;"
                f"background:{STATE_COLORS[name]};height:100%'></div>"
            )
    return (
        f"<div class='faasmp-progress'><b>{html.escape(title)}</b> · {html.escape(progress_line(snap))}"
        "<div style='display:flex;height:10px;background:#eee;border-radius:3px;overflow:hidden;"
        f"margin-top:3px'>{''.join(bar)}</div></div>"
    )


# -- views ----------------------------------------------------------------------------------
StatusFn = Callable[[], dict[str, Any]]


class _Refresher:
    """A timer thread that redraws a view while its model changes (≤ 1/interval redraws/s).

    It runs inside a copy of the caller's context (contextvars), so what it
    displays in a Jupyter kernel is attributed to the cell that created it.
    *setup* runs first on that thread (building widgets imports plotly, which
    takes seconds the first time: the cell's own work does not wait for it).
    """

    def __init__(
        self,
        model: DashboardModel,
        draw: Callable[[], None],
        interval: float,
        status: StatusFn | None,
        setup: Callable[[], None] | None = None,
    ):
        self.model = model
        self._draw = draw
        self._setup = setup
        self.interval = max(float(interval), MIN_INTERVAL)
        self._status = status
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.failed = False
        self._linger_until: float | None = None
        self._drawn = -1
        self._draw_lock = threading.Lock()
        self._last_status = 0.0
        self.draws = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._loop,), name="faasmp-dashboard", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        try:
            if self._setup is not None:
                self._setup()
        except Exception as exc:  # noqa: BLE001 - a view that cannot be built must not break the cell
            logger.warning("faasmp dashboard: could not build the widgets (%s: %s)", type(exc).__name__, exc)
            logger.debug("faasmp dashboard: build failure", exc_info=True)
            self.failed = True
            self._stop.set()
            return
        finally:
            self.ready.set()
        wait = 0.0
        while not self._stop.wait(wait):
            if self._linger_until is not None and (
                time.monotonic() > self._linger_until or self.model.progress().outstanding == 0
            ):
                break
            t = time.perf_counter()
            self.poll_status()
            self.redraw()
            if self.model.follow_all and self.model.pool_stopped:
                break  # a pool view ends with its pool
            # Keep this thread's share of a core (and of the GIL) under ~10% even for big figures.
            wait = max(self.interval, 10 * (time.perf_counter() - t))
        self._stop.set()
        self.redraw(force=True)

    def poll_status(self, force: bool = False) -> None:
        if self._status is None:
            return
        now = time.monotonic()
        busy = self.model.progress().outstanding > 0 or self.model.follow_all
        if force or (busy and now - self._last_status >= 0.5):
            self._last_status = now
            try:
                self.model.set_status(self._status())
            except Exception as exc:  # noqa: BLE001 - a status hiccup must not kill the view
                logger.debug("faasmp dashboard: status poll failed: %s", exc)

    def redraw(self, force: bool = False) -> None:
        if self.failed or (not self.ready.is_set() and self._setup is not None):
            return
        with self._draw_lock:
            version = self.model.version
            if version == self._drawn and not force:
                return
            try:
                self._draw()
                self.draws += 1
            except Exception:  # noqa: BLE001 - drawing must never break the user's work
                logger.exception("faasmp dashboard: redraw failed")
            self._drawn = version

    def finish(self, linger: float, setup_timeout: float = 60.0) -> None:
        """Stop after outstanding tasks finished or *linger* seconds; redraw at once.

        Waits up to *setup_timeout* for the view to be built, so a short cell
        still ends with its final dashboard.
        """
        self.ready.wait(setup_timeout)
        self.poll_status(force=True)
        if linger <= 0 or self.model.progress().outstanding == 0:
            self.stop()
        else:
            self._linger_until = time.monotonic() + linger
            self.redraw()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        self.redraw(force=True)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


class View:
    """What the magics drive: ``show()``, then ``finish()`` when the cell ends."""

    kind = "none"

    def __init__(self, model: DashboardModel, title: str) -> None:
        self.model = model
        self.title = title

    def show(self) -> None:
        """Display the view (in the current cell)."""

    def finish(self, linger: float = 0.0) -> None:
        """The cell ended: final redraw (after *linger* seconds at most, if tasks are still running)."""

    def stop(self) -> None:
        self.finish(0.0)

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the view is on screen (widgets are built off the cell's thread)."""
        return True

    @property
    def alive(self) -> bool:
        return False


class TextView(View):
    """Plain IPython: prints the text report when the cell ends."""

    kind = "text"

    def finish(self, linger: float = 0.0) -> None:
        print(text_report(self.model.snapshot(), self.title))

    def stop(self) -> None:
        """Nothing to stop (the report is printed once, by :meth:`finish`)."""


class StaticDashboard(View):
    """No widgets: a text progress line while work runs, then a static plotly figure and the table."""

    kind = "static"

    def __init__(
        self, model: DashboardModel, title: str, *, interval: float = 1.0, status: StatusFn | None = None
    ):
        super().__init__(model, title)
        self._handle: Any = None
        self._final = False
        self._refresher = _Refresher(model, self._draw, max(interval, 1.0), status)

    def _bundle(self) -> dict[str, Any]:
        snap = self.model.snapshot()
        bundle: dict[str, Any] = {"text/plain": text_report(snap, self.title)}
        if self._final:
            with contextlib.suppress(ImportError):
                bundle.update(figure_bundle(static_figure(snap)))
        return bundle

    def _draw(self) -> None:
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)

    def show(self) -> None:
        from IPython.display import display  # noqa: PLC0415

        self._handle = display(self._bundle(), raw=True, display_id=True)
        self._refresher.start()

    def finish(self, linger: float = 0.0) -> None:
        self._final = True
        self._refresher.finish(0.0)

    @property
    def alive(self) -> bool:
        return self._refresher.alive


class LiveDashboard(View):
    """ipywidgets + a plotly ``FigureWidget``, updated from a throttled timer thread.

    :meth:`show` displays a light placeholder at once (so the dashboard sits at
    the top of the cell's output); the widgets are built on the timer thread
    and replace it.
    """

    kind = "widgets"

    def __init__(
        self,
        model: DashboardModel,
        title: str,
        *,
        interval: float = MIN_INTERVAL,
        status: StatusFn | None = None,
    ):
        super().__init__(model, title)
        self.header: Any = None
        self.figure: Any = None
        self.table: Any = None
        self.widget: Any = None
        self._handle: Any = None
        self._refresher = _Refresher(model, self._draw, interval, status, setup=self._build)

    @property
    def draws(self) -> int:
        return self._refresher.draws

    def _build(self) -> None:
        with _IMPORT_LOCK:
            import ipywidgets as widgets  # noqa: PLC0415

            figure = build_figure(widget=True)
        figure._config = {**figure._config, "responsive": True, "displaylogo": False}
        self.figure = figure
        self.header = widgets.HTML()
        self.table = widgets.HTML()
        self.widget = widgets.VBox([self.header, self.figure, self.table], layout={"width": "100%"})
        self.widget.add_class("faasmp-dashboard")
        self._draw()
        if self._handle is not None:
            self._handle.update(self._bundle(self.model.snapshot()), raw=True)

    def _draw(self) -> None:
        snap = self.model.snapshot()
        self.header.value = progress_html(snap, self.title)
        self.table.value = summary_html(snap)
        update_figure(self.figure, snap)

    def _bundle(self, snap: Snapshot) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_() or {}) if self.widget is not None else {}
        bundle["text/plain"] = text_report(snap, self.title)
        bundle["text/html"] = progress_html(snap, self.title) + summary_html(snap)
        return bundle

    def show(self) -> None:
        from IPython.display import display  # noqa: PLC0415

        self._handle = display(self._bundle(self.model.snapshot()), raw=True, display_id=True)
        self._refresher.start()

    def finish(self, linger: float = 0.0) -> None:
        self._refresher.finish(linger)
        if self._handle is not None:
            # The text fallback (nbconvert, notebook viewers) gets the final numbers.
            self._handle.update(self._bundle(self.model.snapshot()), raw=True)

    def stop(self) -> None:
        self._refresher.stop()

    def wait_ready(self, timeout: float) -> bool:
        return self._refresher.ready.wait(timeout)

    @property
    def alive(self) -> bool:
        return self._refresher.alive


def prewarm() -> None:
    """Import plotly's widget modules (seconds on first import) so the first dashboard is quick."""
    with _IMPORT_LOCK, contextlib.suppress(Exception):
        import ipywidgets  # noqa: F401, PLC0415
        import plotly.basewidget  # noqa: PLC0415
        import plotly.subplots  # noqa: F401, PLC0415

        build_figure(widget=False)  # plotly imports its validators lazily on first use


def widgets_available() -> bool:
    """True if ipywidgets and plotly's FigureWidget (which needs anywidget) can be used."""
    try:
        import anywidget  # noqa: F401, PLC0415
        import ipywidgets  # noqa: F401, PLC0415
        import plotly.graph_objects  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def plotly_available() -> bool:
    try:
        import plotly.graph_objects  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True
