#!/usr/bin/env python
"""The whole performance suite in one command: stdlib vs lithops.multiprocessing vs faasmp.

    python benchmarks/run_all.py [--quick | --ci] [--out DIR] [--impl stdlib,faasmp]
                                 [--bench pipe_rtt,lock] [--jobs 3] [--no-png]

Every benchmark runs for every implementation side by side, in a fresh interpreter
per (benchmark, implementation), under a time limit: a peer that overruns it is killed
with its whole process tree and reported as ``timeout`` (with a bound when its
measurement had started).  ``lithops.multiprocessing`` runs on the Lithops localhost
backend with its Redis on a private valkey this script starts (the one faasmp embeds);
faasmp runs with its defaults.

Writes ``DIR/results.json`` (every value, or ``timeout``/``error`` with a reason),
prints a table with the ratios faasmp/stdlib and faasmp/lithops and the targets, and
saves plotly figures as HTML and PNG (``DIR/*.html``, ``DIR/*.png``; PNG needs
kaleido >= 1 and a Chrome/Chromium).

``--quick`` runs smaller workloads (a few minutes); ``--ci`` tiny ones with short
limits, several children at once (``--jobs 3``): the correctness run of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import _common
import bench_core
import bench_ipc
from _common import IMPL_LABEL, IMPLS, Impl, phase

# ---------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------
FULL: dict[str, Any] = {
    "sleep": 1.0,
    "reps": 3,
    "proc_reps": 10,
    "tiny_small": 1000,
    "tiny_large": 10000,
    "rtt_n": 2000,
    "mb_n": 200,  # ~0.2 s at 1 GB/s: 50 messages (~50 ms) were mostly noise
    "pool_mb_n": 64,
    "lock_n": 5000,
    "value_n": 2000,
    "mgr_n": 2000,
    "mc_chunks": 8,
    "mc_points": 2_000_000,
    "sort_n": 5_000_000,
    "sort_procs": 4,
    "scale_workers": [1, 2, 4, 8, 16, 32, 64],
    "scale_sleep": 0.5,
    "scale_tiny": 1000,
}
QUICK: dict[str, Any] = {
    **FULL,
    "sleep": 0.25,
    "reps": 1,
    "proc_reps": 3,
    "rtt_n": 500,
    "mb_n": 50,
    "pool_mb_n": 16,
    "lock_n": 1000,
    "value_n": 500,
    "mgr_n": 500,
    "mc_points": 200_000,
    "sort_n": 500_000,
    "scale_workers": [1, 2, 4],
    "scale_sleep": 0.25,
    "scale_tiny": 300,
}
CI: dict[str, Any] = {
    **QUICK,
    "sleep": 0.05,
    "proc_reps": 2,
    "tiny_small": 50,
    "tiny_large": 200,
    "rtt_n": 50,
    "mb_n": 2,
    "pool_mb_n": 2,
    "lock_n": 100,
    "value_n": 50,
    "mgr_n": 50,
    "mc_points": 20_000,
    "sort_n": 20_000,
    "sort_procs": 2,
    "scale_workers": [1, 2],
    "scale_sleep": 0.05,
    "scale_tiny": 40,
}

# metric id -> (label, unit, better); labels use the run's parameters
METRICS: dict[str, tuple[str, str, str]] = {
    "first_map_8": ("first Pool(8).map overhead (cold)", "s", "lower"),
    "first_map_32": ("first Pool(32).map overhead (cold)", "s", "lower"),
    "warm_map_8": ("warm Pool(8).map overhead", "s", "lower"),
    "warm_map_32": ("warm Pool(32).map overhead", "s", "lower"),
    "process": ("Process start+join (warm)", "s", "lower"),
    "first_process": ("first Process start+join (cold)", "s", "lower"),
    "pool_create_cold": ("Pool(8) creation (cold: the program's first pool)", "s", "lower"),
    "bare_call": ("bare Lithops FunctionExecutor call of one function (cold)", "s", "lower"),
    "tiny_map_small": ("{tiny_small:,} tiny tasks, map, chunksize=1", "tasks/s", "higher"),
    "tiny_map_large": ("{tiny_large:,} tiny tasks, map, chunksize=1", "tasks/s", "higher"),
    "tiny_imapu_small": ("{tiny_small:,} tiny tasks, imap_unordered", "tasks/s", "higher"),
    "tiny_imapu_large": ("{tiny_large:,} tiny tasks, imap_unordered", "tasks/s", "higher"),
    "tiny_map_default": ("{tiny_large:,} tiny tasks, map, default chunksize", "tasks/s", "higher"),
    "pipe_rtt_p50": ("Pipe 1-byte RTT p50", "us", "lower"),
    "pipe_rtt_p99": ("Pipe 1-byte RTT p99", "us", "lower"),
    "pipe_mbps": ("Pipe throughput, 1 MiB messages", "MiB/s", "higher"),
    "queue_mbps": ("Queue throughput, 1 MiB messages", "MiB/s", "higher"),
    "pool_mbps": ("warm Pool(2).map, 1 MiB argument and result per task", "MiB/s", "higher"),
    "pipe_dsm_mbps": ("  Pipe, faasmp's DSM forced (bodies through Redis)", "MiB/s", "higher"),
    "queue_dsm_mbps": ("  Queue, faasmp's DSM forced (bodies through Redis)", "MiB/s", "higher"),
    "lock_us": ("Lock acquire+release p50", "us", "lower"),
    "value_lock_s": ("`Value += 1` under its lock, {value_n:,} times", "s", "lower"),
    "mgr_set_us": ("Manager dict set p50", "us", "lower"),
    "mgr_get_us": ("Manager dict get p50", "us", "lower"),
    "mc_s": ("Monte Carlo pi, Pool(2), {mc_chunks}x{mc_points:,} points", "s", "lower"),
    "mc_efficiency": ("  Monte Carlo efficiency (stdlib time / time)", "", "higher"),
    "sort_shared_s": ("sort {sort_n:,} ints, {sort_procs} procs, shared Array in place", "s", "lower"),
    "sort_pipes_s": ("sort {sort_n:,} ints, {sort_procs} procs, copies via Pipes", "s", "lower"),
    "sort_views_s": ("sort {sort_n:,} ints, {sort_procs} procs, numpy views of a RawArray", "s", "lower"),
    "sort_views_dsm_s": ("  the same, faasmp's DSM forced (segments in Redis)", "s", "lower"),
    "sync_1mib_ms": ("lock release+acquire, 1 MiB RawArray, 1% of it written", "ms", "lower"),
}

# benchmark (one child run) -> (metrics it reports, lithops worker_processes or None = from params)
BENCHES: dict[str, tuple[tuple[str, ...], int]] = {
    "first_8": (("first_map_8",), 8),
    "first_32": (("first_map_32",), 32),
    "warm_8": (("warm_map_8",), 8),
    "warm_32": (("warm_map_32",), 32),
    "process": (("process",), 2),
    "first_process": (("first_process",), 2),
    "pool_create_cold": (("pool_create_cold",), 8),
    "bare_call": (("bare_call",), 1),
    "tiny_map_small": (("tiny_map_small",), 8),
    "tiny_map_large": (("tiny_map_large",), 8),
    "tiny_imapu_small": (("tiny_imapu_small",), 8),
    "tiny_imapu_large": (("tiny_imapu_large",), 8),
    "tiny_map_default": (("tiny_map_default",), 8),
    "pipe_rtt": (("pipe_rtt_p50", "pipe_rtt_p99"), 2),
    "pipe_tp": (("pipe_mbps",), 2),
    "queue_tp": (("queue_mbps",), 2),
    "pipe_tp_dsm": (("pipe_dsm_mbps",), 2),
    "queue_tp_dsm": (("queue_dsm_mbps",), 2),
    "pool_mb": (("pool_mbps",), 2),
    "lock": (("lock_us",), 2),
    "value_lock": (("value_lock_s",), 2),
    "manager": (("mgr_set_us", "mgr_get_us"), 2),
    "monte_carlo": (("mc_s",), 2),
    "sort_shared": (("sort_shared_s",), 0),
    "sort_pipes": (("sort_pipes_s",), 0),
    "sort_views": (("sort_views_s",), 0),
    "sort_views_dsm": (("sort_views_dsm_s",), 0),
    "sync_1mib": (("sync_1mib_ms",), 2),
}
#: Rows that measure faasmp's DSM whatever the default shared memory of the run
#: (host shared memory on localhost): their faasmp children run with
#: ``FAASMP_SHARED_MEMORY=dsm``.  sync_1mib measures the DSM's sync point; the
#: *_tp_dsm rows large messages through Redis, as on cloud backends (in host
#: mode their bodies go through host files).
DSM_BENCHES = frozenset({"sort_views_dsm", "sync_1mib", "pipe_tp_dsm", "queue_tp_dsm"})
SCALE_METRICS = {
    "overhead_s": ("warm Pool(n).map(sleep) overhead", "s", "lower"),
    "tiny_per_s": ("tiny tasks/s on a warm Pool(n), chunksize=1", "tasks/s", "higher"),
}

# Seconds a benchmark may take (warm-ups included), by implementation; "quick" and "ci"
# scale the full limits.  lithops.multiprocessing starts an interpreter per call
# (~0.3 s of CPU each on this kind of machine): its limits are what it needs for the
# fork-join rows, and short elsewhere, where it cannot finish anyway.
LIMITS_FULL: dict[str, dict[str, float]] = {
    "stdlib": {b: 60.0 for b in BENCHES}
    | {"sort_shared": 120.0, "sort_pipes": 120.0, "sort_views": 120.0, "sort_views_dsm": 120.0},
    "faasmp": {b: 90.0 for b in BENCHES}
    | {"sort_shared": 180.0, "sort_pipes": 180.0, "sort_views": 180.0, "sort_views_dsm": 180.0},
    # (lithops' limits below are per benchmark; bare_call is the same in every column)
    "lithops": {
        "first_8": 45.0,
        "first_32": 60.0,
        "warm_8": 60.0,
        "warm_32": 90.0,
        "process": 30.0,
        "first_process": 30.0,
        "pool_create_cold": 30.0,
        "bare_call": 30.0,
        "tiny_map_small": 20.0,
        "tiny_map_large": 20.0,
        "tiny_imapu_small": 20.0,
        "tiny_imapu_large": 20.0,
        "tiny_map_default": 30.0,
        "pipe_rtt": 45.0,
        "pipe_tp": 45.0,
        "queue_tp": 45.0,
        "pipe_tp_dsm": 45.0,
        "queue_tp_dsm": 45.0,
        "pool_mb": 45.0,
        "lock": 30.0,
        "value_lock": 30.0,
        "manager": 45.0,
        "monte_carlo": 60.0,
        "sort_shared": 45.0,
        "sort_pipes": 60.0,
        "sort_views": 30.0,
        "sort_views_dsm": 30.0,
        "sync_1mib": 30.0,
    },
}
SCALE_LIMIT_FULL = {"stdlib": 60.0, "faasmp": 90.0, "lithops": 60.0}
MODE_FACTOR = {"full": 1.0, "quick": 0.5, "ci": 0.5}
LITHOPS_MODE_FACTOR = {"full": 1.0, "quick": 0.3, "ci": 0.03}


def limit(impl: str, bench: str, mode: str, scale: float) -> float:
    if bench.startswith("scale_"):
        base = SCALE_LIMIT_FULL[impl]
    else:
        base = LIMITS_FULL[impl][bench]
    factor = (LITHOPS_MODE_FACTOR if impl == "lithops" else MODE_FACTOR)[mode]
    return max(base * factor, 1.0 if mode == "ci" else 3.0) * scale


# ---------------------------------------------------------------------------
# child side: functions the workers run (module level: shipped by value)
# ---------------------------------------------------------------------------
def sort_slice_shared(arr: Any, lo: int, hi: int) -> None:
    """Sort arr[lo:hi] of a shared Array in place (read the slice, sort, write it back)."""
    import numpy as np

    vals = np.array(arr[lo:hi], dtype=np.int64)
    vals.sort()
    arr[lo:hi] = vals.tolist()


def sort_view(arr: Any, lo: int, hi: int) -> None:
    """Sort arr[lo:hi] of a shared RawArray in place through a numpy view (no copy out)."""
    import numpy as np

    np.frombuffer(arr, dtype=np.int32)[lo:hi].sort()


def sort_via_pipe(conn: Any) -> None:
    """Receive int32s as bytes, send them back sorted."""
    import numpy as np

    vals = np.frombuffer(conn.recv_bytes(), dtype=np.int32).copy()
    vals.sort()
    conn.send_bytes(vals.tobytes())


# ---------------------------------------------------------------------------
# child side: benchmarks
# ---------------------------------------------------------------------------
def _p50_us(fn: Any, n: int, warm: int = 50) -> float:
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e6


def b_first_8(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return {"first_map_8": bench_core.first_map(impl, p, 8)}


def b_first_32(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return {"first_map_32": bench_core.first_map(impl, p, 32)}


def b_warm_8(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return {"warm_map_8": bench_core.warm_map(impl, p, 8)}


def b_warm_32(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return {"warm_map_32": bench_core.warm_map(impl, p, 32)}


def b_bare_call(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    """Fresh interpreter: one ``lithops.FunctionExecutor().call_async(time.sleep, S)`` and its result, minus S.

    The floor under a first ``Pool(n).map`` on Lithops: faasmp's target is
    at most 1.2x this.  The implementation is not used (every column measures
    the same call, under the same conditions as its own first map).
    """
    import lithops

    s = p["sleep"]
    phase("measure", kind="time", sub=s)
    t0 = time.perf_counter()
    # The localhost backend with this interpreter as its runtime, as faasmp's
    # default and the lithops.mp column's config use.
    config = {
        "lithops": {"backend": "localhost", "storage": "localhost"},
        "localhost": {"runtime": sys.executable},
    }
    fexec = lithops.FunctionExecutor(config=config)
    fexec.call_async(bench_core.sleep, s)
    fexec.get_result()
    dt = time.perf_counter() - t0
    fexec.clean()
    return {"bare_call": {"value": dt - s, "total_s": dt}}


def b_process(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return {"process": bench_core.m_process(impl, p)}


def b_first_process(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    """Fresh interpreter: the first ``Process(target=noop)`` started and joined (no warm-up)."""
    phase("measure", kind="time", sub=0.0)
    t0 = time.perf_counter()
    proc = impl.Process(target=bench_core.noop)
    proc.start()
    proc.join()
    dt = time.perf_counter() - t0
    if impl.name != "lithops" and proc.exitcode != 0:  # lithops.mp has no exitcode
        raise RuntimeError(f"the first process exited with {proc.exitcode}")
    return {"first_process": {"value": dt}}


def b_pool_create_cold(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    """Fresh interpreter: the program's first ``Pool(8)`` returning (faasmp: its server starts here).

    One map then checks the pool works (untimed).
    """
    phase("measure", kind="time", sub=0.0)
    t0 = time.perf_counter()
    pool = impl.Pool(8)
    dt = time.perf_counter() - t0
    try:
        if pool.map(abs, [-1, -2]) != [1, 2]:
            raise RuntimeError("the new pool computed a wrong map")
    finally:
        pool.terminate()
    return {"pool_create_cold": {"value": dt}}


def _tiny(impl: Impl, n: int, how: str) -> dict[str, Any]:
    impl.warm(8)
    with impl.Pool(8) as pool:
        pool.map(abs, range(16), chunksize=1)  # warm-up: the workers are up
        phase("measure", kind="rate", n=n)
        t0 = time.perf_counter()
        if how == "map":
            out = pool.map(abs, range(n), chunksize=1)
        elif how == "imapu":
            out = sorted(pool.imap_unordered(abs, range(n)))
        else:
            out = pool.map(abs, range(n))
        dt = time.perf_counter() - t0
    if out != list(range(n)):
        raise AssertionError(f"wrong results from {how} of {n} tasks")
    return {"value": n / dt, "elapsed_s": dt, "n": n}


def b_tiny_map_small(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return {"tiny_map_small": _tiny(impl, p["tiny_small"], "map")}


def b_tiny_map_large(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return {"tiny_map_large": _tiny(impl, p["tiny_large"], "map")}


def b_tiny_imapu_small(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return {"tiny_imapu_small": _tiny(impl, p["tiny_small"], "imapu")}


def b_tiny_imapu_large(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return {"tiny_imapu_large": _tiny(impl, p["tiny_large"], "imapu")}


def b_tiny_map_default(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    return {"tiny_map_default": _tiny(impl, p["tiny_large"], "default")}


def b_pipe_rtt(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    impl.warm(2)
    a, b = impl.mp.Pipe()
    proc = impl.Process(target=bench_ipc.echo, args=(b,))
    proc.start()
    for _ in range(min(200, p["rtt_n"])):  # warm-up (and the echo process is up)
        a.send_bytes(b"x")
        a.recv_bytes()
    phase("measure", kind="per-op")
    ts = []
    for _ in range(p["rtt_n"]):
        t0 = time.perf_counter()
        a.send_bytes(b"x")
        a.recv_bytes()
        ts.append(time.perf_counter() - t0)
    a.send_bytes(b"stop")
    proc.join(30)
    ts.sort()
    us = [t * 1e6 for t in ts]
    return {
        "pipe_rtt_p50": {"value": us[len(us) // 2], "n": len(us), "mean": statistics.fmean(us)},
        "pipe_rtt_p99": {"value": us[min(len(us) - 1, int(len(us) * 0.99))], "n": len(us)},
    }


def _mb_throughput(p: dict[str, Any], send: Callable[[bytes], Any], ack: Callable[[], Any]) -> dict[str, Any]:
    """Send ``mb_n`` 1 MiB messages, then a sync the sink acknowledges after the last.

    A first, unmeasured round of ``mb_n`` messages warms the path up: a fresh
    Redis pays page faults for the memory its first queued megabytes take
    (~55 faults per 1 MiB message over the first 200 on the embedded server,
    about half the throughput), once per server; measured from cold, the
    faasmp row swung 0.4-1.2x between runs.
    """
    send(b"sync")  # the sink is up
    ack()
    n, mb = p["mb_n"], bench_ipc.MB
    for _ in range(n):
        send(mb)
    send(b"sync")
    ack()
    phase("measure", kind="rate", n=n)
    t0 = time.perf_counter()
    for _ in range(n):
        send(mb)
    send(b"sync")
    ack()
    dt = time.perf_counter() - t0
    send(b"stop")
    return {"value": n / dt, "elapsed_s": dt, "n": n}


def b_pipe_tp(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    impl.warm(2)
    a, b = impl.mp.Pipe()
    proc = impl.Process(target=bench_ipc.sink, args=(b,))
    proc.start()
    result = _mb_throughput(p, a.send_bytes, a.recv_bytes)
    proc.join(30)
    return {"pipe_mbps": result}


def b_queue_tp(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    impl.warm(2)
    q, done = impl.mp.Queue(), impl.mp.Queue()
    proc = impl.Process(target=bench_ipc.queue_sink, args=(q, done))
    proc.start()
    result = _mb_throughput(p, q.put, done.get)
    proc.join(30)
    return {"queue_mbps": result}


def b_pipe_tp_dsm(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    """pipe_tp with faasmp's DSM forced (its child runs with FAASMP_SHARED_MEMORY=dsm)."""
    return {"pipe_dsm_mbps": b_pipe_tp(impl, p)["pipe_mbps"]}


def b_queue_tp_dsm(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    """queue_tp with faasmp's DSM forced."""
    return {"queue_dsm_mbps": b_queue_tp(impl, p)["queue_mbps"]}


def identity(x: Any) -> Any:
    """A pool task that sends its argument back."""
    return x


def b_pool_mb(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    """A warm ``Pool(2).map(identity, ...)`` of ``pool_mb_n`` distinct 1 MiB bytes, chunksize=1.

    Each task's MiB goes out and comes back: what a program that hands a
    pool chunks of data (DataFrame pieces, arrays) pays per MiB.  The rate
    counts the MiB of arguments.
    """
    n = p["pool_mb_n"]
    items = [os.urandom(1 << 20) for _ in range(n)]
    with impl.Pool(2) as pool:
        pool.map(identity, items[:4], chunksize=1)  # the workers are up, the paths warm
        phase("measure", kind="rate", n=n)
        t0 = time.perf_counter()
        out = pool.map(identity, items, chunksize=1)
        dt = time.perf_counter() - t0
    if out != items:
        raise AssertionError("pool_mb: the results are not the arguments")
    return {"pool_mbps": {"value": n / dt, "elapsed_s": dt, "n": n}}


def b_lock(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    lock = impl.mp.Lock()

    def cycle() -> None:
        lock.acquire()
        lock.release()

    phase("measure", kind="per-op")
    return {"lock_us": {"value": _p50_us(cycle, p["lock_n"]), "n": p["lock_n"]}}


def b_value_lock(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    """``with v.get_lock(): v.value += 1``, *value_n* times: a lock round trip plus the value's read and write."""
    v = impl.mp.Value("i", 0)
    for _ in range(10):  # warm-up: connections, scripts, the value's local copy
        with v.get_lock():
            v.value += 1
    n = p["value_n"]
    phase("measure", kind="per-op")
    t0 = time.perf_counter()
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    dt = time.perf_counter() - t0
    if v.value != n + 10:
        raise AssertionError(f"Value is {v.value} after {n + 10} locked increments")
    return {"value_lock_s": {"value": dt, "n": n}}


def b_manager(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    manager = impl.mp.Manager()
    if impl.name == "lithops":
        manager.start()  # lithops' Manager() is not started yet (stdlib's and faasmp's are)
    d = manager.dict()
    d["k"] = 1
    phase("measure", kind="per-op")
    n = p["mgr_n"]
    set_us = _p50_us(lambda: d.__setitem__("k", 1), n)
    get_us = _p50_us(lambda: d["k"], n)
    if d["k"] != 1:
        raise AssertionError("Manager dict lost its value")
    manager.shutdown()
    return {"mgr_set_us": {"value": set_us, "n": n}, "mgr_get_us": {"value": get_us, "n": n}}


def b_monte_carlo(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    res = bench_core.m_monte_carlo(impl, p)
    if abs(res["pi"] - 3.14159) > 0.05:
        raise AssertionError(f"Monte Carlo pi = {res['pi']}, not close to pi")
    return {"mc_s": res}


def _sort_data(n: int) -> Any:
    import numpy as np

    return np.random.default_rng(12345).integers(0, 2**31 - 1, n, dtype=np.int32)


def _check_sorted(out: Any, data: Any) -> dict[str, Any]:
    import numpy as np

    ok = bool(len(out) == len(data) and np.all(out[1:] >= out[:-1]))
    same = bool(ok and np.array_equal(out, np.sort(data)))
    if not (ok and same):
        raise AssertionError("the sorted output is not the sorted input")
    return {"sorted": True}


def _sort_setup(impl: Impl, p: dict[str, Any]) -> tuple[int, int, Any, list[tuple[int, int]]]:
    """The sort rows' common start: (n, procs, the data, each process's slice); warm, then measuring."""
    n, procs = p["sort_n"], p["sort_procs"]
    data = _sort_data(n)
    impl.warm(procs)
    bounds = [(i * n // procs, (i + 1) * n // procs) for i in range(procs)]
    phase("measure", kind="time", sub=0.0)
    return n, procs, data, bounds


def _sort_slices(impl: Impl, target: Any, arr: Any, bounds: list[tuple[int, int]]) -> None:
    """One process per slice of *arr* running *target(arr, lo, hi)*; all started, then all joined."""
    ps = [impl.Process(target=target, args=(arr, lo, hi)) for lo, hi in bounds]
    for pr in ps:
        pr.start()
    for pr in ps:
        pr.join()


def b_sort_shared(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    n, procs, data, bounds = _sort_setup(impl, p)
    t0 = time.perf_counter()
    arr = impl.mp.Array("i", data.tolist(), lock=False)
    _sort_slices(impl, sort_slice_shared, arr, bounds)
    out = np.array(arr[:], dtype=np.int32)
    out.sort(kind="stable")  # merges the sorted runs
    dt = time.perf_counter() - t0
    return {"sort_shared_s": {"value": dt, "n": n, "procs": procs, **_check_sorted(out, data)}}


def b_sort_views(impl: Impl, p: dict[str, Any], metric: str = "sort_views_s") -> dict[str, Any]:
    import numpy as np

    n, procs, data, bounds = _sort_setup(impl, p)
    t0 = time.perf_counter()
    arr = impl.mp.RawArray("i", n)
    view = np.frombuffer(arr, dtype=np.int32)
    view[:] = data
    _sort_slices(impl, sort_view, arr, bounds)
    view.sort(kind="stable")  # merges the sorted runs, in place
    dt = time.perf_counter() - t0
    return {metric: {"value": dt, "n": n, "procs": procs, **_check_sorted(view, data)}}


def b_sort_views_dsm(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    """sort_views with faasmp's DSM forced (its child runs with FAASMP_SHARED_MEMORY=dsm)."""
    return b_sort_views(impl, p, "sort_views_dsm_s")


def b_sync_1mib(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    """One release+acquire of a lock after writing 1% of a 1 MiB shared array (scattered elements).

    On the stdlib the writes are already in shared memory: this is the lock's
    cost.  On faasmp the release ships the changed bytes and the acquire asks
    for other processes' changes.
    """
    import numpy as np

    arr = impl.mp.RawArray("d", 131072)
    lock = impl.mp.Lock()
    view = np.frombuffer(arr)
    rng = np.random.default_rng(3)
    picks = [rng.choice(len(view), len(view) // 100, replace=False) for _ in range(16)]
    lock.acquire()
    times = []
    phase("measure", kind="time", sub=0.0)
    for i in range(p.get("sync_rounds", 200)):
        view[picks[i % 16]] += 1.0
        t0 = time.perf_counter()
        lock.release()
        lock.acquire()
        times.append(time.perf_counter() - t0)
    lock.release()
    return {
        "sync_1mib_ms": {
            "value": statistics.median(times) * 1e3,
            "p90": sorted(times)[len(times) * 9 // 10] * 1e3,
        }
    }


def b_sort_pipes(impl: Impl, p: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    n, procs, data, bounds = _sort_setup(impl, p)
    t0 = time.perf_counter()
    pipes = [impl.mp.Pipe() for _ in range(procs)]
    ps = [impl.Process(target=sort_via_pipe, args=(child,)) for _, child in pipes]
    for pr in ps:
        pr.start()
    for (parent, _), (lo, hi) in zip(pipes, bounds, strict=True):
        parent.send_bytes(data[lo:hi].tobytes())
    parts = [np.frombuffer(parent.recv_bytes(), dtype=np.int32) for parent, _ in pipes]
    for pr in ps:
        pr.join()
    out = np.concatenate(parts)
    out.sort(kind="stable")  # merges the sorted runs
    dt = time.perf_counter() - t0
    return {"sort_pipes_s": {"value": dt, "n": n, "procs": procs, **_check_sorted(out, data)}}


def b_scale(impl: Impl, p: dict[str, Any], n: int) -> dict[str, Any]:
    s = p["scale_sleep"]
    impl.warm(n)
    with impl.Pool(n) as pool:  # warm-up: every worker runs once
        pool.map(time.sleep, [0] * n)
    samples = []
    for rep in range(p["reps"]):
        phase("measure" if rep == 0 else "rep", kind="time", sub=s)
        t0 = time.perf_counter()
        with impl.Pool(n) as pool:
            pool.map(time.sleep, [s] * n)
        samples.append(time.perf_counter() - t0 - s)
    k = p["scale_tiny"]
    with impl.Pool(n) as pool:
        pool.map(abs, range(n), chunksize=1)
        phase("rep", kind="rate", n=k)
        t0 = time.perf_counter()
        out = pool.map(abs, range(k), chunksize=1)
        dt = time.perf_counter() - t0
    if out != list(range(k)):
        raise AssertionError("wrong tiny-task results")
    return {
        "overhead_s": {"value": statistics.median(samples), "samples": samples},
        "tiny_per_s": {"value": k / dt, "n": k},
    }


def child_run(params: dict[str, Any]) -> Any:
    def run(impl: Impl, bench: str) -> dict[str, Any]:
        if bench.startswith("scale_"):
            return {"metrics": b_scale(impl, params, int(bench.split("_")[1]))}
        return {"metrics": globals()[f"b_{bench}"](impl, params)}

    return run


# ---------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------
def lithops_workers(bench: str, params: dict[str, Any]) -> int:
    if bench.startswith("scale_"):
        return int(bench.split("_")[1])
    n = BENCHES[bench][1]
    return n or int(params["sort_procs"])


def run_impl(
    impl: str,
    benches: list[str],
    params: dict[str, Any],
    mode: str,
    scale: float,
    tmp: str,
    redis_conf: dict[str, Any],
    log: Any,
    group: bool = False,
) -> dict[str, dict[str, Any]]:
    """Every benchmark of one implementation: one fresh child each, or (*group*) one child
    for all but the cold-start ones (each still under its own limit; a child that overruns
    one is killed and a new one runs the rest)."""
    out: dict[str, dict[str, Any]] = {}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", impl, "--params", json.dumps(params)]

    def env_for(bench: str) -> dict[str, str]:
        if impl == "lithops":
            return _common.lithops_env(tmp, redis_conf, lithops_workers(bench, params))
        env = dict(os.environ)
        if impl == "faasmp" and bench in DSM_BENCHES:
            env["FAASMP_SHARED_MEMORY"] = "dsm"
        return env

    def record(bench: str, res: dict[str, Any]) -> None:
        res["limit_s"] = limits[bench]
        out[bench] = res
        log(impl, bench, res)

    limits = {b: limit(impl, b, mode, scale) for b in benches}
    if group:
        alone = [b for b in benches if b.startswith("first_")]
        rest = [b for b in benches if b not in alone]
        if impl == "faasmp":  # the DSM rows need a child of their own (its environment forces the DSM)
            dsm_rows = [b for b in rest if b in DSM_BENCHES]
            rest = [b for b in rest if b not in DSM_BENCHES]
            if dsm_rows:
                _common.run_child(cmd, dsm_rows, limits, env_for(dsm_rows[0]), 15.0 * scale, record)
        for bench in alone:
            _common.run_child(cmd, [bench], limits, env_for(bench), 15.0 * scale, record)
        if rest:
            # lithops: one worker_processes for the group, the largest any of them needs
            widest = max(rest, key=lambda b: lithops_workers(b, params))
            _common.run_child(cmd, rest, limits, env_for(widest), 15.0 * scale, record)
        return out
    skip_scaling_after: int | None = None
    for bench in benches:
        if bench.startswith("scale_") and skip_scaling_after is not None:
            res = {"status": "timeout", "reason": f"not run: Pool({skip_scaling_after}) already timed out"}
            res["limit_s"] = limits[bench]
            out[bench] = res
            log(impl, bench, res)
            continue
        _common.run_child(cmd, [bench], limits, env_for(bench), 15.0 * scale, record)
        if bench.startswith("scale_") and out[bench]["status"] == "timeout":
            skip_scaling_after = int(bench.split("_")[1])
    return out


def collect(
    raw: dict[str, dict[str, dict[str, Any]]], params: dict[str, Any]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    """Per-metric and per-scaling-point results from the per-benchmark child results."""
    results: dict[str, dict[str, Any]] = {m: {} for m in METRICS}
    scaling: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in SCALE_METRICS}
    for impl, benches in raw.items():
        for bench, res in benches.items():
            if bench.startswith("scale_"):
                n = bench.split("_")[1]
                names: tuple[str, ...] = tuple(SCALE_METRICS)
                target = {m: scaling[m].setdefault(impl, {}) for m in names}
            else:
                names = BENCHES[bench][0]
                target = {m: results[m] for m in names}
            for m in names:
                if res["status"] == "ok":
                    entry = {
                        "status": "ok",
                        **res["metrics"][m],
                        "import_s": res.get("import_s"),
                        "load_avg_1m": res.get("load_avg_1m"),
                    }
                else:
                    entry = {k: v for k, v in res.items() if k != "metrics"}
                    # a bound from a killed child belongs to the metric it measured first
                    if m != names[0]:
                        entry.pop("bound", None)
                if bench.startswith("scale_"):
                    target[m][n] = entry
                else:
                    target[m][impl] = entry
    # Monte Carlo efficiency: stdlib time / implementation time
    std = results["mc_s"].get("stdlib")
    for impl, res in results["mc_s"].items():
        if res["status"] != "ok":
            results["mc_efficiency"][impl] = {
                "status": res["status"],
                "reason": "its Monte Carlo run: " + str(res.get("reason", res["status"])),
            }
        elif not std or std["status"] != "ok":
            results["mc_efficiency"][impl] = {"status": "error", "reason": "no stdlib time to compare with"}
        else:
            results["mc_efficiency"][impl] = {"status": "ok", "value": std["value"] / res["value"]}
    return results, scaling


def fmt_value(res: dict[str, Any] | None, unit: str) -> str:
    if res is None:
        return "-"
    if res["status"] == "ok":
        v = res["value"]
        if unit == "us" and v < 10:
            return f"{v:.2f}"
        if unit in ("tasks/s", "MiB/s", "us"):
            return f"{v:,.0f}"
        if unit == "":
            return f"{v:.2f}"
        return f"{v:.3f}"
    if res["status"] == "timeout":
        if "bound" in res:
            op, b = res["bound"]
            return f"{op}{b:,.0f}" if unit in ("tasks/s", "MiB/s", "us") else f"{op}{b:.2f}"
        return "timeout"
    return "error"


def ratio_of(a: dict[str, Any] | None, b: dict[str, Any] | None) -> tuple[str, float | None]:
    """a/b as text and number, or a bound on it when b (the other implementation) timed out."""
    if not a or a["status"] != "ok" or not b:
        return "-", None
    if b["status"] == "ok":
        if b["value"] <= 0:
            return "n/a", None
        r = a["value"] / b["value"]
        return f"{r:.2f}x", r
    if "bound" in b:
        op, bound = b["bound"]
        if bound <= 0:
            return "n/a", None
        r = a["value"] / bound
        # a/b with b > bound means a/b < a/bound, and the other way round
        return f"{'<' if op == '>' else '>'}{r:.3g}x", None
    return "n/a", None


def metric_label(m: str, params: dict[str, Any]) -> str:
    return METRICS[m][0].format(**params)


def _load_range(entries: list[dict[str, Any] | None]) -> str:
    """The machine's 1-minute load average while a row was measured (min-max over its entries)."""
    loads = [e["load_avg_1m"] for e in entries if e and e.get("load_avg_1m") is not None]
    if not loads:
        return "-"
    lo, hi = min(loads), max(loads)
    return f"{lo:.0f}" if round(lo) == round(hi) else f"{lo:.0f}-{hi:.0f}"


def render(
    results: dict[str, dict[str, Any]],
    scaling: dict[str, dict[str, dict[str, Any]]],
    params: dict[str, Any],
    impls: list[str],
    markdown: bool = False,
) -> str:
    head = ["metric", "unit", "better", *(IMPL_LABEL[i] for i in impls)]
    with_std, with_lit = "stdlib" in impls and "faasmp" in impls, "lithops" in impls and "faasmp" in impls
    if with_std:
        head.append("faasmp/stdlib")
    if with_lit:
        head.append("faasmp/lithops")
    head.append("load avg")
    rows = []
    for m, (_, unit, better) in METRICS.items():
        r = results.get(m, {})
        if not r:
            continue
        row = [metric_label(m, params), unit, better, *(fmt_value(r.get(i), unit) for i in impls)]
        if with_std:
            row.append(ratio_of(r.get("faasmp"), r.get("stdlib"))[0] if m != "mc_efficiency" else "")
        if with_lit:
            row.append(ratio_of(r.get("faasmp"), r.get("lithops"))[0] if m != "mc_efficiency" else "")
        row.append(_load_range([r.get(i) for i in impls]))
        rows.append(row)
    for sm, (label, unit, better) in SCALE_METRICS.items():
        for n in params["scale_workers"]:
            per = {i: scaling[sm].get(i, {}).get(str(n)) for i in impls}
            if not any(per.values()):
                continue
            row = [f"{label}, n={n}", unit, better, *(fmt_value(per[i], unit) for i in impls)]
            if with_std:
                row.append(ratio_of(per.get("faasmp"), per.get("stdlib"))[0])
            if with_lit:
                row.append(ratio_of(per.get("faasmp"), per.get("lithops"))[0])
            row.append(_load_range(list(per.values())))
            rows.append(row)
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(str(c).strip().replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join(out)
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    lines = [
        "  ".join(str(c).ljust(widths[i]) if i < 3 else str(c).rjust(widths[i]) for i, c in enumerate(row))
        for row in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(
    results: dict[str, dict[str, Any]],
    scaling: dict[str, dict[str, dict[str, Any]]],
    params: dict[str, Any],
    impls: list[str],
) -> str:
    """The same table as Markdown (pasted into docs/performance.md)."""
    return render(results, scaling, params, impls, markdown=True)


def evaluate_targets(results: dict[str, dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    def val(m: str, impl: str) -> float | None:
        r = results.get(m, {}).get(impl)
        return r["value"] if r and r["status"] == "ok" else None

    out: list[dict[str, Any]] = []

    def add(target: str, measured: str, met: bool | None) -> None:
        out.append({"target": target, "measured": measured, "met": met})

    for m, n in (("warm_map_8", 8), ("warm_map_32", 32)):
        f, s = val(m, "faasmp"), val(m, "stdlib")
        if f is not None and s:
            add(
                f"warm Pool({n}) fork-join overhead <= 2x stdlib",
                f"{f:.3f} s vs {s:.3f} s = {f / s:.2f}x",
                f <= 2 * s,
            )
    f = val("first_map_8", "faasmp")
    if f is not None:
        add("first call (cold Pool(8).map overhead) <= 0.5 s", f"{f:.3f} s", f <= 0.5)
    for m in ("tiny_map_small", "tiny_map_large", "tiny_imapu_small", "tiny_imapu_large"):
        f = val(m, "faasmp")
        if f is not None:
            add(f">= 5,000 tiny tasks/s warm ({metric_label(m, params)})", f"{f:,.0f} tasks/s", f >= 5000)
    f = val("pipe_rtt_p50", "faasmp")
    if f is not None:
        add("Pipe 1-byte RTT p50 <= 200 us", f"{f:.0f} us", f <= 200)
    # issue 16: ratios to the stdlib and lithops.multiprocessing of the same run
    for m, other, bound, what in (
        ("pipe_mbps", "stdlib", 0.6, ">="),
        ("queue_mbps", "stdlib", 0.6, ">="),
        ("pipe_rtt_p50", "lithops", 0.3, "<="),
        ("lock_us", "lithops", 0.3, "<="),
        ("value_lock_s", "lithops", 0.3, "<="),
        ("mgr_set_us", "lithops", 0.5, "<="),
        ("mgr_get_us", "lithops", 0.5, "<="),
    ):
        f, o = val(m, "faasmp"), val(m, other)
        if f is not None and o:
            r = f / o
            add(
                f"{metric_label(m, params)} {what} {bound}x {IMPL_LABEL[other]}",
                f"{r:.2f}x",
                r >= bound if what == ">=" else r <= bound,
            )
    # The bare call's floor is the column without faasmp's own start-up running
    # beside it (faasmp's child starts its server and warm pool at import).
    bare = [v for v in (val("bare_call", i) for i in IMPLS) if v is not None]
    f, b = val("first_map_8", "faasmp"), min(bare, default=None)
    if f is not None and b:
        add(
            "first Pool(8).map <= 1.2x a bare Lithops call",
            f"{f:.3f} s vs {b:.3f} s = {f / b:.2f}x",
            f <= 1.2 * b,
        )
    for m, what in (("pipe_mbps", "Pipe"), ("queue_mbps", "Queue")):
        f = val(m, "faasmp")
        if f is not None:
            add(
                f"{what} throughput with 1 MiB messages >= 500 MB/s",
                f"{f * 1.048576:,.0f} MB/s",
                f * 1.048576 >= 500,
            )
    f = val("mc_efficiency", "faasmp")
    if f is not None:
        add("Monte Carlo efficiency >= 0.9 of stdlib", f"{f:.2f}", f >= 0.9)
    f, s = val("sort_pipes_s", "faasmp"), val("sort_pipes_s", "stdlib")
    if f is not None and s:
        add(
            "shared-array sort via pipes within 1.5x of stdlib",
            f"{f:.2f} s vs {s:.2f} s = {f / s:.2f}x",
            f <= 1.5 * s,
        )
    f, s = val("sort_views_s", "faasmp"), val("sort_views_s", "stdlib")
    if f is not None and s:
        add(
            "in-place shared-array sort via numpy views within 1.5x of stdlib",
            f"{f:.2f} s vs {s:.2f} s = {f / s:.2f}x",
            f <= 1.5 * s,
        )
    f = val("sync_1mib_ms", "faasmp")
    if f is not None:
        add("a sync point on a 1 MiB array, 1% written, <= 2 ms", f"{f:.2f} ms", f <= 2.0)
    return out


def run_counts(timeout_scale: float) -> dict[str, Any]:
    """Round trips and commands per operation, measured in a fresh interpreter (bench_counts.py)."""
    import subprocess

    import bench_counts

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_counts.py")
    try:
        proc = subprocess.run(
            [sys.executable, script, "--json"],
            capture_output=True,
            text=True,
            timeout=180 * timeout_scale,
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "reason": f"over {180 * timeout_scale:.0f} s"}
    if proc.returncode != 0:
        return {"status": "error", "reason": proc.stderr[-2000:]}
    counts = json.loads(proc.stdout)
    table = bench_counts.table({k: bench_counts.OpCount(**v) for k, v in counts.items()})
    return {"status": "ok", "counts": counts, "table": table}


def scrub_paths(text: str) -> str:
    """Machine paths (from tracebacks in error reasons) shortened, so results can be published."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for path, name in (
        (root, "<project>"),
        (sys.prefix, "<venv>"),
        (sys.base_prefix, "<python>"),
        (tempfile.gettempdir(), "<tmp>"),
        (os.path.expanduser("~"), "~"),
    ):
        if len(path) > 1:
            text = text.replace(json.dumps(path)[1:-1], name)
    return text


def rerender(path: str, out: str, png: bool, plots_too: bool) -> int:
    """Table, targets and plots of an earlier run (e.g. after changing how they are drawn)."""
    with open(path) as f:
        doc = json.load(f)
    params, impls = doc["meta"]["params"], doc["meta"]["impls"]
    print(render(doc["results"], doc["scaling"], params, impls))
    doc["targets"] = evaluate_targets(doc["results"], params)
    doc["table_markdown"] = render_markdown(doc["results"], doc["scaling"], params, impls)
    os.makedirs(out, exist_ok=True)
    if plots_too:
        import plots

        doc["plots"] = plots.make_all(doc, out, png=png)
    with open(os.path.join(out, "results.json"), "w") as f:
        f.write(scrub_paths(json.dumps(doc, indent=2)))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller workloads and limits (a few minutes)")
    size.add_argument("--ci", action="store_true", help="tiny workloads: the correctness run of the tests")
    ap.add_argument("--out", default="bench-results", help="directory for results.json and the plots")
    ap.add_argument("--impl", default=",".join(IMPLS), help="comma-separated subset of " + ",".join(IMPLS))
    ap.add_argument(
        "--bench", default="", help="comma-separated subset of: " + ",".join(BENCHES) + ",scaling"
    )
    ap.add_argument(
        "--jobs", type=int, default=None, help="implementations measured at once (default 1; --ci: 3)"
    )
    ap.add_argument(
        "--group",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one child per implementation for all warm benchmarks (default: only with --ci)",
    )
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every time limit")
    ap.add_argument(
        "--no-counts", action="store_true", help="skip the round trips and commands per operation (faasmp)"
    )
    ap.add_argument("--no-plots", action="store_true", help="no plots at all")
    ap.add_argument("--no-png", action="store_true", help="HTML plots only")
    ap.add_argument(
        "--from-json", metavar="PATH", help="re-render the table and plots of an earlier results.json"
    )
    ap.add_argument("--child", metavar="IMPL", help=argparse.SUPPRESS)
    ap.add_argument("--params", help=argparse.SUPPRESS)
    ap.add_argument("benches", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        _common.ship_by_value(sys.modules[__name__], bench_core, bench_ipc)
        _common.child_loop(args.child, args.benches, child_run(json.loads(args.params)))
        return 0

    if args.from_json:
        return rerender(args.from_json, args.out, png=not args.no_png, plots_too=not args.no_plots)
    mode = "ci" if args.ci else "quick" if args.quick else "full"
    params = {"ci": CI, "quick": QUICK, "full": FULL}[mode]
    impls = [i for i in args.impl.split(",") if i]
    for name in impls:
        if name not in IMPLS:
            ap.error(f"unknown implementation {name!r}; known: {', '.join(IMPLS)}")
    wanted = [b for b in args.bench.split(",") if b] or [*BENCHES, "scaling"]
    benches: list[str] = []
    for b in wanted:
        if b == "scaling":
            benches += [f"scale_{n}" for n in params["scale_workers"]]
        elif b in BENCHES:
            benches.append(b)
        else:
            ap.error(f"unknown benchmark {b!r}; known: {', '.join(BENCHES)}, scaling")
    jobs = args.jobs or (3 if args.ci else 1)
    group = args.ci if args.group is None else args.group

    os.makedirs(args.out, exist_ok=True)
    _common.compile_faasmp_bytecode()  # the cold rows measure faasmp as a wheel installs it
    tmp = tempfile.mkdtemp(prefix="faasmp-bench-")
    os.chmod(tmp, 0o700)
    server = None
    redis_conf: dict[str, Any] = {}
    started = time.monotonic()
    load_start = os.getloadavg()[0]

    def log(impl: str, bench: str, res: dict[str, Any]) -> None:
        if res["status"] == "ok":
            shown = ", ".join(
                f"{m}={fmt_value({'status': 'ok', **v}, METRICS.get(m, SCALE_METRICS.get(m, ('', '', '')))[1])}"
                for m, v in res["metrics"].items()
            )
        else:
            shown = f"{res['status']}: {res.get('reason', '')}"[:200]
        print(
            f"  {IMPL_LABEL[impl]:<11} {bench:<17} {shown}  ({res.get('wall_s', 0):.1f} s, "
            f"load {os.getloadavg()[0]:.1f})",
            file=sys.stderr,
            flush=True,
        )

    raw: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        if "lithops" in impls:
            server, redis_conf = _common.start_lithops_redis()
        if group or jobs > 1:
            with ThreadPoolExecutor(max_workers=jobs) as ex:
                futs = {
                    i: ex.submit(
                        run_impl, i, benches, params, mode, args.timeout_scale, tmp, redis_conf, log, group
                    )
                    for i in impls
                }
                for impl, fut in futs.items():
                    raw[impl] = fut.result()
        else:
            # Benchmark by benchmark, the implementations one after the other:
            # on a shared machine the three rows of a benchmark see similar load.
            raw = {i: {} for i in impls}
            skip: dict[str, int] = {}
            for bench in benches:
                for impl in impls:
                    if bench.startswith("scale_") and impl in skip:
                        res = {
                            "status": "timeout",
                            "reason": f"not run: Pool({skip[impl]}) already timed out",
                        }
                        res["limit_s"] = limit(impl, bench, mode, args.timeout_scale)
                        raw[impl][bench] = res
                        log(impl, bench, res)
                        continue
                    got = run_impl(impl, [bench], params, mode, args.timeout_scale, tmp, redis_conf, log)
                    raw[impl].update(got)
                    if bench.startswith("scale_") and got[bench]["status"] == "timeout":
                        skip[impl] = int(bench.split("_")[1])
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.monotonic() - started

    results, scaling = collect(raw, params)
    table = render(results, scaling, params, impls)
    print()
    print(table)
    targets = evaluate_targets(results, params)
    if targets:
        print("\ntargets (faasmp):")
        for t in targets:
            verdict = {True: "met", False: "NOT met", None: "undecided"}[t["met"]]
            print(f"  [{verdict}] {t['target']}: {t['measured']}")
    op_counts = None
    if "faasmp" in impls and not args.no_counts:
        op_counts = run_counts(args.timeout_scale)
        print("\nround trips and Redis commands per operation (faasmp; benchmarks/bench_counts.py):")
        print(op_counts.get("table") or f"  {op_counts.get('status')}: {op_counts.get('reason', '')}")
    print(f"\ntotal benchmark time {total:.0f} s")

    import lithops

    import faasmp

    doc = {
        "meta": {
            "mode": mode,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "faasmp": faasmp.__version__,
            "lithops": lithops.__version__,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "params": params,
            "impls": impls,
            "jobs": jobs,
            "grouped": group,
            "total_s": total,
            "load_avg_1m_start": load_start,
            "load_avg_1m_end": os.getloadavg()[0],
        },
        "metrics": {
            m: {"label": metric_label(m, params), "unit": u, "better": b} for m, (_, u, b) in METRICS.items()
        },
        "scaling_metrics": {
            m: {"label": lab, "unit": u, "better": b} for m, (lab, u, b) in SCALE_METRICS.items()
        },
        "results": results,
        "scaling": scaling,
        "targets": targets,
        "op_counts": op_counts,
        "table_markdown": render_markdown(results, scaling, params, impls),
    }
    if not args.no_plots:
        import plots

        doc["plots"] = plots.make_all(doc, args.out, png=not args.no_png)
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        f.write(scrub_paths(json.dumps(doc, indent=2)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
