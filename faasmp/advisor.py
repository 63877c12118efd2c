"""The granularity advisor: tell users when tasks are too small for their overhead.

It listens to a context's stats events; when a Pool job of many chunks
finishes whose tasks ran for less time than each one cost in overhead
(upload, queueing, unpickling, result transfer), it warns once per context
with the figures and a chunksize that would amortise the overhead.
"""

from __future__ import annotations

import math
import statistics
import warnings

from .stats import Event, JobFinished, JobStarted, StatsCollector, TaskRecord

#: Jobs with fewer chunks than this are not judged (too little evidence).
MIN_TASKS = 16


class GranularityWarning(UserWarning):
    """Tasks are much shorter than faasmp's per-task overhead."""


class GranularityAdvisor:
    """Subscribes to *stats*; warns at most once."""

    def __init__(self, stats: StatsCollector) -> None:
        self._stats = stats
        self._jobs: dict[str, JobStarted] = {}
        self.warned = False
        stats.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if self.warned:
            return
        if isinstance(event, JobStarted) and event.kind == "pool":
            self._jobs[event.job_id] = event
        elif isinstance(event, JobFinished) and event.job_id in self._jobs:
            self._jobs.pop(event.job_id)
            advice = advise(self._stats.records(event.job_id))
            if advice:
                self.warned = True
                warnings.warn(advice, GranularityWarning, stacklevel=2)


def advise(records: list[TaskRecord]) -> str | None:
    """A warning text if *records* (one job) show tasks dominated by overhead."""
    if len(records) < MIN_TASKS:
        return None
    run = statistics.median(r.phases["run"] for r in records)
    # "invoke" (waiting for a free worker) mostly measures queueing behind
    # other tasks of the same job, so it is not counted as overhead.
    overhead = statistics.median(
        sum(v for k, v in r.phases.items() if k not in ("run", "invoke")) for r in records
    )
    if overhead <= 0 or run >= overhead:
        return None
    items = statistics.median(r.n_items for r in records) or 1
    per_item = run / items if items else run
    suggested = max(math.ceil(10 * overhead / max(per_item, 1e-6)), 2)
    return (
        f"faasmp: the tasks of this job ran {run * 1e3:.2f} ms each but cost "
        f"{overhead * 1e3:.2f} ms of overhead each ({len(records)} tasks). Larger chunks "
        f"amortise it: try chunksize={suggested} (about {suggested * per_item * 1e3:.0f} ms of "
        "work per task). This warning is shown once."
    )


def verdict(records: list[TaskRecord]) -> str:
    """The advisor's verdict on *records* in one line (what the dashboard shows)."""
    pool = [r for r in records if r.kind == "pool"]
    if not pool:
        return "no Pool tasks to judge"
    if len(pool) < MIN_TASKS:
        return f"too few Pool tasks to judge ({len(pool)} < {MIN_TASKS})"
    return advise(pool) or "task granularity is fine: tasks run longer than their overhead"
