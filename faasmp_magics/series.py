"""The dashboard's series: pure functions from a :class:`~faasmp_magics.dashboard.Snapshot` to what is drawn.

No plotly and no widgets here: each function turns a frozen snapshot into
plain lists (numbers, with ``None`` where a line breaks), so the series are
tested without a front end and every view draws the same data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from faasmp import stats
from faasmp.stats import PHASES, TaskRecord

if TYPE_CHECKING:
    from .dashboard import Snapshot

#: Tasks drawn individually (timeline, per-task bars, memory/CPU); older ones
#: still count in progress, histograms and the summary table.
MAX_TASKS_DRAWN = 1500
MAX_BARS_DRAWN = 300
HIST_BINS = 30
#: Hosts drawn in the per-host utilisation panel (the first ones to start); the
#: label of the last one drawn says how many more ran.
MAX_HOSTS_DRAWN = 16
#: Time bins of the per-host utilisation bands (the same bins for every host).
HOST_BINS = 60
#: Height of a host's band in that panel; bands are 1 apart.
BAND = 0.8


def histogram(values: Sequence[float], bins: int = HIST_BINS) -> tuple[list[float], list[int], float]:
    """Equal-width bins over the values' range: (bin centers, counts, bin width)."""
    if not values:
        return [], [], 1.0
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins if hi > lo else max(abs(lo) * 0.05, 1e-3)
    n = bins if hi > lo else 1
    counts = [0] * n
    for v in values:
        counts[min(int((v - lo) / width), n - 1)] += 1
    return [lo + (i + 0.5) * width for i in range(n)], counts, width


def _segments(pairs: Sequence[tuple[float, float, int]]) -> tuple[list[float | None], list[int | None]]:
    xs: list[float | None] = []
    ys: list[int | None] = []
    for a, b, y in pairs:
        xs += [a, b, None]
        ys += [y, y, None]
    return xs, ys


def timeline(snap: Snapshot) -> dict[str, tuple[list[Any], list[Any]]]:
    """Per task, by start order: waiting (submitted→started) and running segments.

    A Process is a task too: its bar runs from ``start()`` to its exit (a
    non-zero exit code draws it as failed), and ``labels`` puts its name and
    exit code above the start of its bar.  Processes still running are drawn as
    waiting until now.
    """
    recs = sorted(snap.records[-MAX_TASKS_DRAWN:], key=lambda r: r.started)
    t0 = snap.t0
    wait = [(r.submitted - t0, r.started - t0, i) for i, r in enumerate(recs)]
    run = [(r.run_start - t0, r.run_end - t0, i) for i, r in enumerate(recs) if r.ok]
    failed = [(r.run_start - t0, r.run_end - t0, i) for i, r in enumerate(recs) if not r.ok]
    n = len(recs)
    running = sorted(snap.running, key=lambda p: p.t)
    wait += [(p.t - t0, snap.now - t0, n + i) for i, p in enumerate(running)]
    labels: tuple[list[Any], list[Any]] = ([], [])
    texts: list[str] = []
    for i, r in enumerate(recs):
        if r.kind == "process":
            labels[0].append(r.submitted - t0)
            labels[1].append(i)
            texts.append(f"{r.name} (exit {r.exitcode})")
    for i, p in enumerate(running):
        labels[0].append(p.t - t0)
        labels[1].append(n + i)
        texts.append(f"{p.name} (running)")
    return {
        "wait": _segments(wait),
        "run": _segments(run),
        "failed": _segments(failed),
        "labels": labels,
        "texts": (texts, []),
    }


def start_end_histogram(snap: Snapshot) -> dict[str, tuple[list[float], list[int], float]]:
    """Histograms of task start and end times (seconds since the dashboard started), shared bins."""
    starts = [r.run_start - snap.t0 for r in snap.records]
    ends = [r.run_end - snap.t0 for r in snap.records]
    centers, _, width = histogram(starts + ends)
    if not centers:
        return {"start": ([], [], 1.0), "end": ([], [], 1.0)}
    lo = centers[0] - width / 2
    n = len(centers)

    def count(values: list[float]) -> list[int]:
        counts = [0] * n
        for v in values:
            counts[min(max(int((v - lo) / width), 0), n - 1)] += 1
        return counts

    return {"start": (centers, count(starts), width), "end": (centers, count(ends), width)}


def phase_bars(snap: Snapshot) -> tuple[list[int], dict[str, list[float]]]:
    """Per-phase milliseconds of the most recent tasks, for stacked bars: (task numbers, ms per phase)."""
    first = max(len(snap.records) - MAX_BARS_DRAWN, 0)
    recs = snap.records[first:]
    x = list(range(first, first + len(recs)))
    return x, {p: [r.phases[p] * 1e3 for r in recs] for p in PHASES}


def resources(snap: Snapshot) -> dict[str, tuple[list[int], list[float]]]:
    """Per task: peak RSS (MB), CPU seconds and run (wall) seconds."""
    first = max(len(snap.records) - MAX_TASKS_DRAWN, 0)
    recs = snap.records[first:]
    x = list(range(first, first + len(recs)))
    return {
        "memory": (x, [r.peak_rss / 2**20 for r in recs]),
        "cpu": (x, [r.cpu_s for r in recs]),
        "wall": (x, [r.phases["run"] for r in recs]),
    }


def latency_ms(snap: Snapshot) -> tuple[list[float], list[int], float]:
    """A histogram of client round trips given as :class:`~faasmp.stats.LatencySample` events."""
    return histogram([rtt * 1e3 for rtt in snap.rtts])


def latency_by_command(snap: Snapshot) -> tuple[list[str], list[float], list[int]]:
    """Sampled Redis latency of the program's own commands: (command, mean µs, samples), busiest first."""
    rows = stats.latency_table(s for r in snap.reports for s in r.latency)[:10]
    return [c for c, *_ in rows], [mean * 1e6 for _, _, mean, _ in rows], [n for _, n, _, _ in rows]


def utilisation(snap: Snapshot) -> tuple[list[str], list[float], list[int]]:
    """Busy % of each worker over the span of the records: (worker, busy %, tasks)."""
    util = [u for u in stats.utilisation(snap.records) if u.worker][-64:]
    # "slot " keeps ids such as "518273.1" from being read as numbers by plotly.
    return [f"slot {u.worker}" for u in util], [u.busy_fraction * 100 for u in util], [u.tasks for u in util]


def busy_workers(snap: Snapshot) -> tuple[list[float], list[float]]:
    """Mean busy workers over time (seconds since the dashboard started), for the start/end panel."""
    times, busy = stats.busy_over_time(snap.records[-MAX_TASKS_DRAWN:])
    return [t - snap.t0 for t in times], busy


@dataclasses.dataclass(frozen=True)
class HostBusy:
    """One host's busy workers over time, on the same time bins as every other host of a snapshot."""

    host: str
    #: Worker slots of this host that ran a record shown (its capacity as far as the records tell).
    workers: int
    tasks: int
    #: Bin starts, seconds since the dashboard's ``t0``.
    times: tuple[float, ...]
    #: Mean number of this host's workers busy in each bin (:func:`faasmp.stats.busy_over_time`).
    busy: tuple[float, ...]
    #: Bin width, seconds.
    width: float

    @property
    def busy_fraction(self) -> float:
        """The mean share of this host's workers that were busy over the span (0..1)."""
        if not self.busy or not self.workers:
            return 0.0
        return min(sum(self.busy) / (len(self.busy) * self.workers), 1.0)

    def describe(self) -> str:
        """One line: the host, its workers and tasks, and how busy its workers were."""
        return stats.host_line(self.host, self.workers, self.tasks, self.busy_fraction)


def host_busy(snap: Snapshot) -> list[HostBusy]:
    """Busy workers over time per host, first started first, all on the bins of the whole span.

    The span is from the first record's start to the last one's end; a host
    that started late, or left early, is idle (zero) outside its own tasks.
    """
    recs = [r for r in snap.records[-MAX_TASKS_DRAWN:] if r.run_end >= r.started]
    if not recs:
        return []
    span = (min(r.started for r in recs), max(r.run_end for r in recs))
    by_host: dict[str, list[TaskRecord]] = {}
    for r in recs:  # grouped once: each host's series then reads only its own records
        by_host.setdefault(r.host, []).append(r)
    out = []
    for host, own in sorted(by_host.items(), key=lambda item: (min(r.started for r in item[1]), item[0])):
        times, busy = stats.busy_over_time(own, HOST_BINS, host, span=span)
        workers = len({r.worker for r in own})
        width = times[1] - times[0]
        out.append(HostBusy(host, workers, len(own), tuple(t - snap.t0 for t in times), tuple(busy), width))
    return out


def host_bands(snap: Snapshot) -> dict[str, tuple[list[Any], list[Any]]]:
    """Per-host utilisation as one band per host (the first host on top), whatever the number of hosts.

    ``idle``: a rectangle per host over the whole span, the height of all its
    workers; ``busy``: drawn over it, a step outline whose height in each bin
    is the share of the host's workers that were busy.  Shapes are separated
    by ``None`` (one filled trace each, numbers only); ``labels`` are where
    each host's :meth:`HostBusy.describe` line goes (``texts``).
    """
    hosts = host_busy(snap)
    shown = hosts[:MAX_HOSTS_DRAWN]
    idle: tuple[list[Any], list[Any]] = ([], [])
    busy: tuple[list[Any], list[Any]] = ([], [])
    labels: tuple[list[Any], list[Any]] = ([], [])
    texts: list[str] = []
    for i, h in enumerate(shown):
        base = len(shown) - 1 - i
        start, end = h.times[0], h.times[-1] + h.width
        idle[0].extend([start, end, end, start, None])
        idle[1].extend([base, base, base + BAND, base + BAND, None])
        xs: list[Any] = [start]
        ys: list[Any] = [base]
        for t, b in zip(h.times, h.busy, strict=True):
            top = base + min(b / h.workers, 1.0) * BAND if h.workers else base
            xs += [t, t + h.width]
            ys += [top, top]
        busy[0].extend([*xs, end, None])
        busy[1].extend([*ys, base, None])
        labels[0].append(start)
        labels[1].append(base + BAND)
        texts.append(h.describe())
    if len(hosts) > len(shown):
        texts[-1] += f" (and {len(hosts) - len(shown)} more host(s), not drawn)"
    return {"idle": idle, "busy": busy, "labels": labels, "texts": (texts, [])}


def ipc_bars(snap: Snapshot) -> tuple[list[str], list[int], list[str]]:
    """Operations per IPC/sync object and operation: (label, count, hover text), most used first."""
    rows = stats.ipc_table(s for r in snap.reports for s in r.ipc)
    rows.sort(key=lambda row: -row[3])
    rows = rows[:16]
    # The end of an object id (and a pipe's end number) keeps labels apart.
    labels = [f"{kind} …{name[-8:]} {op}" for kind, name, op, *_ in rows]
    hover = [
        f"{kind} {name} {op}: {n} ops, {nbytes} bytes, blocked {wait * 1e3:.1f} ms"
        for kind, name, op, n, nbytes, wait in rows
    ]
    return labels, [row[3] for row in rows], hover


def verdict(snap: Snapshot) -> str:
    """The granularity advisor's verdict on the records shown."""
    from faasmp.advisor import verdict as advisor_verdict  # noqa: PLC0415

    return advisor_verdict(list(snap.records))


def workers_used(snap: Snapshot) -> int:
    """How many distinct workers ran the records shown (not the warm pool's size now)."""
    return len({(r.host, r.worker) for r in snap.records if r.worker})
