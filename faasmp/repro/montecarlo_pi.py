"""Monte Carlo pi: scaling with workers, faasmp vs the stdlib on the same machine."""

from __future__ import annotations

import math
import multiprocessing
import time
from typing import Any

from . import paper
from .core import Result, Row, context, verify
from .scaling import cores, stdlib_counts, worker_counts

TITLE = "Monte Carlo pi scaling"

#: Points sampled by :func:`run`, small and full mode (the paper's 3.2e9).
POINTS = {False: 50_000_000, True: int(paper.MONTECARLO_POINTS)}


def count_inside(job: tuple[int, int]) -> int:
    """Points of *n* random ones (seeded) that fall in the unit quarter circle."""
    import numpy as np

    seed, n = job
    rng = np.random.default_rng(seed)
    inside = 0
    for start in range(0, n, 1_000_000):
        m = min(1_000_000, n - start)
        x, y = rng.random(m), rng.random(m)
        inside += int(np.count_nonzero(x * x + y * y <= 1.0))
    return inside


def timed_pi(pool_factory: Any, workers: int, points: int, tasks: int) -> tuple[float, float]:
    """(seconds for the map on an already started pool, estimate of pi)."""
    per = points // tasks
    with pool_factory(workers) as pool:
        pool.map(count_inside, [(0, 1000)] * workers, chunksize=1)  # start the workers first
        t0 = time.perf_counter()
        counts = pool.map(count_inside, [(seed, per) for seed in range(tasks)], chunksize=1)
        elapsed = time.perf_counter() - t0
    return elapsed, 4.0 * sum(counts) / (per * tasks)


def measure_scaling(on_faasmp: bool, counts: Any, full: bool) -> dict[int, float]:
    """Seconds of the same seeded map on each of *counts* workers (what :func:`run` measures too)."""
    points = POINTS[True] if full else 20_000_000
    pool_factory = context().Pool if on_faasmp else multiprocessing.get_context("fork").Pool
    return {w: timed_pi(pool_factory, w, points, max(counts) * 2)[0] for w in counts}


def run(full: bool = False) -> Result:
    """Time the same map on 1..N workers, on faasmp and on a stdlib Pool (the 'VM')."""
    import plotly.graph_objects as go

    points = POINTS[full]
    counts = worker_counts("montecarlo_pi", full)
    local_counts = stdlib_counts(counts, cores())
    tasks = max(counts) * 2
    t_start = time.perf_counter()
    ctx = context()
    ours: dict[int, float] = {}
    local: dict[int, float] = {}
    pis, local_pis = [], []
    ctx.start_warm_pool(max(counts))  # time the map, not cold starts
    for w in counts:
        ours[w], pi = timed_pi(ctx.Pool, w, points, tasks)
        pis.append(pi)
        if w in local_counts:
            local[w], local_pi = timed_pi(multiprocessing.get_context("fork").Pool, w, points, tasks)
            local_pis.append(local_pi)
    # The estimate of N points has a standard error of 4 * sqrt(p (1 - p) / N), p = pi / 4
    # (1.6e-4 for 1e8 points): 6 of them is a bound a correct run never misses.
    n = (points // tasks) * tasks
    bound = 6 * 4 * math.sqrt(math.pi / 4 * (1 - math.pi / 4) / n)
    checks = verify(
        {
            f"pi within 6 standard errors ({bound:.1e}) on every worker count": all(
                abs(p - math.pi) < bound for p in pis
            ),
            "the same estimate on 1 and on N workers (same seeded tasks)": len(set(pis)) == 1,
            "faasmp and the stdlib Pool count the same points": all(p == pis[0] for p in local_pis),
        }
    )
    # The comparison is at the largest worker count.  When the stdlib did not run
    # there (full mode on a client with fewer than half as many cores), the VM is
    # *derived*: the client's measured 1-core time divided by that count, i.e. ideal
    # scaling, which flatters the VM (the paper's VM lost 20-25% to hyperthreading).
    wmax = max(counts)
    if wmax in local:
        vm_s, vm_how = local[wmax], "measured: a stdlib Pool on this machine ('VM')"
    else:
        vm_s = local[1] / wmax
        vm_how = f"derived: this client's measured 1-core time / {wmax} (ideal scaling on {wmax} cores)"
    ratio = vm_s / ours[wmax]
    low, high = paper.MONTECARLO_VS_VM
    rows = [
        Row("points", paper.MONTECARLO_POINTS, float(points), ""),
        Row(f"faasmp time, {wmax} workers", None, ours[wmax], "s"),
        Row(f"stdlib Pool / VM time, {wmax} workers", None, vm_s, "s", vm_how),
        Row(
            "serverless speed vs VM (VM time / serverless time)",
            f"{low:.2f}-{high:.2f}",
            ratio,
            "x",
            "paper: 20-25% faster on Lambda" + ("" if wmax in local else "; ours vs the derived VM"),
        ),
        Row(f"faasmp speed-up 1 -> {wmax} workers", None, ours[1] / ours[wmax], "x"),
        Row("pi estimate", 3.14159, pis[-1], ""),
    ]
    fig = go.Figure(
        [
            go.Scatter(x=list(counts), y=[ours[w] for w in counts], name="faasmp", mode="lines+markers"),
            go.Scatter(x=list(local), y=list(local.values()), name="stdlib Pool", mode="lines+markers"),
        ]
    )
    fig.update_layout(
        title=f"Monte Carlo pi, {points:.2g} points", xaxis_title="workers", yaxis_title="seconds", height=380
    )
    notes = f"""
The paper ran 3.2e9 points on Lambda and on a VM with as many vCPUs and found the
functions 20-25% faster, because every Lambda worker has a physical core to itself
while the VM's vCPUs are hyperthreads.  Here faasmp's workers and the stdlib's run on
the *same* {multiprocessing.cpu_count()} cores, so the best we can show is that faasmp costs
little beyond the stdlib (ratio {ratio:.2f} on {wmax} workers; 1.0 = equal): there is
no hyperthreading contention to escape.  The advantage in the paper comes from the
hardware the functions get, which only a cloud backend (full mode) can show.
"""
    return Result(
        "montecarlo_pi",
        TITLE,
        "full" if full else "small",
        rows,
        {"scaling": fig},
        {"faasmp": ours, "stdlib": local, "per_workers": {"faasmp": ours, "stdlib": local}},
        notes,
        time.perf_counter() - t_start,
        checks,
    )
