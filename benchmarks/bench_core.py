#!/usr/bin/env python
"""Core overheads of faasmp next to the stdlib and ``lithops.multiprocessing``.

    python benchmarks/bench_core.py [--quick] [--out DIR] [--impl stdlib,faasmp]

The Pool/Process rows of the suite (``run_all.py --bench first_8,warm_8,...``; same
options): the measurements themselves live here and ``run_all.py`` calls them.

first_map(n)   fresh interpreter (after ``import``): ``with Pool(n) as p: p.map(time.sleep, [S]*n)``
               minus S -- pool creation and the first map, cold starts included
warm_map(n)    after a warm-up map in the same interpreter (faasmp: ``start_warm_pool(n)`` first,
               its documented way to keep workers warm): ``with Pool(n) as p: p.map(time.sleep, [S]*n)``
               minus S, median of the repetitions
m_process      warm ``Process(target=noop).start(); .join()`` latency, median
m_monte_carlo  warm ``Pool(2).map`` of pure-Python Monte Carlo chunks: seconds (and pi)
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from _common import Impl, phase


# ---------------------------------------------------------------------------
# functions the workers run (module level: picklable by reference or by value)
# ---------------------------------------------------------------------------
def noop() -> None:
    pass


def sleep(seconds: float) -> None:
    """``time.sleep`` as a Python function (Lithops cannot inspect a builtin's signature)."""
    time.sleep(seconds)


def mc_chunk(args: tuple[int, int]) -> int:
    """Points of a pure-Python Monte Carlo run that fall inside the unit circle."""
    import random  # by-value functions carry no module globals

    seed, n = args
    rnd = random.Random(seed).random
    inside = 0
    for _ in range(n):
        x = rnd()
        y = rnd()
        if x * x + y * y <= 1.0:
            inside += 1
    return inside


# ---------------------------------------------------------------------------
# measurements (run inside a benchmark child, see run_all.py)
# ---------------------------------------------------------------------------
def first_map(impl: Impl, p: dict[str, Any], n: int) -> dict[str, Any]:
    """Fresh interpreter: ``with Pool(n) as p: p.map(time.sleep, [S]*n)`` minus S."""
    s = p["sleep"]
    phase("measure", kind="time", sub=s)
    t0 = time.perf_counter()
    with impl.Pool(n) as pool:
        pool.map(time.sleep, [s] * n)
    dt = time.perf_counter() - t0
    return {"value": dt - s, "total_s": dt}


def warm_map(impl: Impl, p: dict[str, Any], n: int) -> dict[str, Any]:
    """After a warm-up map: ``with Pool(n) as p: p.map(time.sleep, [S]*n)`` minus S, median."""
    s = p["sleep"]
    impl.warm(n)
    t0 = time.perf_counter()
    with impl.Pool(n) as pool:  # warm-up: every worker runs once
        pool.map(time.sleep, [0] * n)
    warmup = time.perf_counter() - t0
    samples = []
    for rep in range(p["reps"]):
        phase("measure" if rep == 0 else "rep", kind="time", sub=s)
        t0 = time.perf_counter()
        with impl.Pool(n) as pool:
            pool.map(time.sleep, [s] * n)
        samples.append(time.perf_counter() - t0 - s)
    return {"value": statistics.median(samples), "samples": samples, "warmup_s": warmup}


def m_process(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    impl.warm(2)
    proc = impl.Process(target=noop)  # warm-up
    proc.start()
    proc.join()
    samples = []
    for rep in range(p["proc_reps"]):
        phase("measure" if rep == 0 else "rep", kind="time", sub=0.0)
        t0 = time.perf_counter()
        proc = impl.Process(target=noop)
        proc.start()
        proc.join()
        samples.append(time.perf_counter() - t0)
    return {"value": statistics.median(samples), "samples": samples}


def m_monte_carlo(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    chunks, points = p["mc_chunks"], p["mc_points"]
    impl.warm(2)
    with impl.Pool(2) as pool:  # warm-up
        pool.map(mc_chunk, [(0, 10)] * 2)
    phase("measure", kind="time", sub=0.0)
    t0 = time.perf_counter()
    with impl.Pool(2) as pool:
        inside = pool.map(mc_chunk, [(seed, points) for seed in range(chunks)])
    dt = time.perf_counter() - t0
    return {"value": dt, "pi": 4.0 * sum(inside) / (chunks * points)}


CORE_BENCHES = "first_8,warm_8,warm_32,process,tiny_map_small,tiny_map_default,monte_carlo"


def main() -> int:
    """The core rows of the suite: ``run_all.py --bench <core rows>`` with the same options."""
    import run_all

    if "--bench" not in sys.argv:
        sys.argv[1:1] = ["--bench", CORE_BENCHES]
    return run_all.main()


if __name__ == "__main__":
    sys.exit(main())
