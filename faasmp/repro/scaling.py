"""Scaling curves: each application's speed-up against workers, ours beside the paper's.

An application module offers ``measure_scaling(on_faasmp, counts, full) -> {workers: s}``:
the seconds its unit of work takes on 1, 2, 4, ... workers, on faasmp or on the stdlib
(the paper's "VM": this machine's own processes).  :func:`curve` runs both sides and
returns a :class:`Scaling` whose ``table`` the notebooks plot; :func:`table` is the pure
computation from measured times.

**Where a 2-core machine stops being informative.**  On the ``localhost`` backend
faasmp's workers are processes on this machine, like the stdlib's, so past this
machine's cores both curves measure the cores being time-shared, not scaling: the
table's ``faasmp_informative``/``stdlib_informative`` columns say so per row.  On a
cloud backend each faasmp worker has a function of its own and its curve stays
informative; the stdlib's still stops at the client's cores.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .core import context
from .paper import SCALING, PaperScaling

#: Worker counts in small mode: 1 and 2 (this machine's cores) and 4, which shows the flattening.
SMALL_WORKERS = (1, 2, 4)
#: Worker counts in full mode (a cloud backend); evolution goes to the paper's 1000.
FULL_WORKERS: dict[str, tuple[int, ...]] = {"evolution": (1, 10, 100, 1000)}
FULL_DEFAULT = (1, 8, 32, 64, 128)

#: Columns of :attr:`Scaling.table`.
COLUMNS = (
    "workers",
    "faasmp_s",
    "stdlib_s",
    "faasmp_speedup",
    "stdlib_speedup",
    "ideal",
    "vs_vm",
    "faasmp_informative",
    "stdlib_informative",
)


def best_time(fn: Callable[[], object], repeats: int = 2) -> float:
    """The shortest of *repeats* timed calls of *fn* (s): the least disturbed by other load."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cores() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux: no affinity mask
        return os.cpu_count() or 1


def worker_counts(name: str, full: bool) -> tuple[int, ...]:
    """The worker counts *name*'s curve is measured at."""
    return FULL_WORKERS.get(name, FULL_DEFAULT) if full else SMALL_WORKERS


def stdlib_counts(counts: Sequence[int], n_cores: int) -> list[int]:
    """The counts the stdlib runs at: up to twice the client's cores (beyond that it only time-shares)."""
    return [w for w in counts if w <= 2 * n_cores]


@dataclasses.dataclass(frozen=True)
class Scaling:
    """One application's scaling curve: the measured table, the paper's figures and a note."""

    name: str
    #: pandas DataFrame with :data:`COLUMNS`, one row per worker count.
    table: Any
    paper: PaperScaling
    #: CPUs of the client.
    cores: int
    #: True when faasmp's workers run on the client's cores (the localhost backend).
    local: bool
    note: str


def table(faasmp_s: Mapping[int, float], stdlib_s: Mapping[int, float], *, n_cores: int, local: bool) -> Any:
    """The scaling table from measured seconds per worker count (NaN where a side did not run).

    Speed-ups are each side's 1-worker time over its time at *w* workers; ``vs_vm`` is
    the stdlib's time over faasmp's (above 1: faasmp was faster), the quantity the paper
    reports against a VM.
    """
    import math

    import pandas as pd

    nan = float("nan")
    for label, times in (("faasmp", faasmp_s), ("stdlib", stdlib_s)):
        if times and 1 not in times:
            raise ValueError(f"the {label} times need a 1-worker run for speed-ups; got {sorted(times)}")
    rows = []
    for w in sorted(set(faasmp_s) | set(stdlib_s)):
        f, s = faasmp_s.get(w, nan), stdlib_s.get(w, nan)
        rows.append(
            (
                w,
                f,
                s,
                faasmp_s[1] / f if w in faasmp_s else nan,
                stdlib_s[1] / s if w in stdlib_s else nan,
                float(w),
                s / f if not (math.isnan(f) or math.isnan(s)) else nan,
                (w <= n_cores) if local else True,
                w <= n_cores,
            )
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def describe(name: str, frame: Any, n_cores: int, local: bool) -> str:
    """The note under a curve: where this machine stops being informative, and the paper's figure."""
    paper = SCALING[name]
    best = frame.loc[frame["faasmp_speedup"].idxmax()]
    where = (
        f"This client has {n_cores} cores and faasmp's workers run on them too (the localhost "
        f"backend), so beyond {n_cores} workers both curves show {n_cores} cores being time-shared, "
        "not scaling: those points flatten by construction and say nothing about the paper's."
        if local
        else f"faasmp's workers are cloud functions, so its curve is informative at every count; "
        f"the stdlib's runs on this client's {n_cores} cores and stops being informative beyond them."
    )
    w = int(best["workers"])
    measured = (
        f"faasmp's best speed-up here: {best['faasmp_speedup']:.2f}x on {w} workers (ideal {w}x)."
        if w > 1
        else "On faasmp no worker count beat 1 worker here."
    )
    return f"{measured}  {where}  The paper: {paper.summary}."


def curve(name: str, full: bool = False, *, result: Any = None) -> Scaling:
    """Measure *name*'s speed-up on each of :func:`worker_counts`, on faasmp and the stdlib.

    If *result* (that experiment's :class:`~faasmp.repro.core.Result`) already holds
    per-worker times (``result.data["per_workers"]``, as Monte Carlo's does), they are
    used instead of measuring again.  Blocks while it measures (seconds in small mode).
    """
    if name not in SCALING:
        raise ValueError(f"no scaling curve for {name!r}; known: {', '.join(SCALING)}")
    ctx = context()
    n_cores, local = cores(), ctx.config.is_local
    measured = result.data.get("per_workers") if result is not None else None
    if measured is None:
        module = importlib.import_module(f"{__package__}.{name}")
        counts = worker_counts(name, full)
        ctx.start_warm_pool(max(counts))  # time the work, not cold starts
        measured = {
            "stdlib": module.measure_scaling(False, stdlib_counts(counts, n_cores), full),
            "faasmp": module.measure_scaling(True, counts, full),
        }
    frame = table(measured["faasmp"], measured["stdlib"], n_cores=n_cores, local=local)
    return Scaling(name, frame, SCALING[name], n_cores, local, describe(name, frame, n_cores, local))
