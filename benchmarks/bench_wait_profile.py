"""Where a small operation's time goes: client CPU, server CPU, waits, sleeps, cores.

One fresh faasmp run; *n* calls of each operation after a warm-up: Manager
dict set / get of one key, Lock acquire+release, ``Value += 1`` under its
lock, and a Pipe 1-byte round trip with an echoing Process.  Per operation
it prints:

* ``wall`` -- p50 and p90 of the call's wall time (µs);
* ``cpu`` -- this process's CPU time (``time.process_time``) per call (µs),
  and the calling thread's user and system time (``getrusage``);
* ``srv`` -- the embedded server's CPU per call, from ``INFO cpu`` (µs);
* ``cmds`` -- Redis commands per call, from ``INFO commandstats`` (Lua's included);
* ``waits``/``writes`` -- waits for a reply and requests written per call
  (``StateBackend.statistics()``);
* ``vcsw`` -- voluntary context switches of this thread per call
  (``getrusage``: each one is a sleep in ``poll`` and a wake-up);
* ``cpu#`` -- the core the client last ran on, and the server's.

``--pin same|split|none`` pins (as a measurement only) the client and the
server to one core, or each to its own core, after the run has started;
``--spin-us`` sets the reply wait's busy-poll window (0: block at once;
see docs/performance.md, "The reply wait"); ``hits``/``misses`` count the
replies taken while spinning and the spins that ran out, per call.

    python benchmarks/bench_wait_profile.py [--n 3000] [--pin same|split|none] [--rounds 3]
        [--ops set,get,lock,value,pipe] [--spin-us 50]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any


def _server_cpu(r: Any) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _server_calls(r: Any) -> int:
    stats = r.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info",))


def _last_cpu(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[36])  # field 39: processor


def measure(
    name: str, op: Callable[[], Any], n: int, state: Any, r: Any, server_pid: int
) -> dict[str, float]:
    for _ in range(300):
        op()
    stats0 = state.statistics()
    spin = getattr(state.direct, "spin_counter", None)  # (a tree without the spin: None)
    hits0, misses0 = (spin.hits, spin.misses) if spin else (0, 0)
    s_cpu0, s_calls0 = _server_cpu(r), _server_calls(r)
    ru0 = resource.getrusage(resource.RUSAGE_THREAD)
    walls = []
    c0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        op()
        walls.append(time.perf_counter() - t0)
    cpu = time.process_time() - c0
    ru1 = resource.getrusage(resource.RUSAGE_THREAD)
    stats1 = state.statistics()
    # (The INFO calls themselves are excluded from the counts by name.)
    s_cpu1, s_calls1 = _server_cpu(r), _server_calls(r)
    walls.sort()
    return {
        "wall_p50": statistics.median(walls) * 1e6,
        "wall_p90": walls[int(0.9 * n)] * 1e6,
        "cpu": cpu / n * 1e6,
        "srv": (s_cpu1 - s_cpu0) / n * 1e6,
        "cmds": (s_calls1 - s_calls0) / n,
        "waits": (stats1.waits - stats0.waits) / n,
        "writes": (stats1.round_trips - stats0.round_trips) / n,
        "hits": (spin.hits - hits0) / n if spin else 0.0,
        "misses": (spin.misses - misses0) / n if spin else 0.0,
        "user": (ru1.ru_utime - ru0.ru_utime) / n * 1e6,
        "sys": (ru1.ru_stime - ru0.ru_stime) / n * 1e6,
        "vcsw": (ru1.ru_nvcsw - ru0.ru_nvcsw) / n,
        "ivcsw": (ru1.ru_nivcsw - ru0.ru_nivcsw) / n,
        "cpu_client": _last_cpu(os.getpid()),
        "cpu_server": _last_cpu(server_pid),
    }


def echo(conn: Any) -> None:
    while True:
        msg = conn.recv_bytes()
        if msg == b"stop":
            break
        conn.send_bytes(msg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pin", choices=("same", "split", "none"), default="none")
    ap.add_argument(
        "--ops", default="set,get", help="of set, get, lock, value (Value += under its lock), pipe"
    )
    ap.add_argument("--spin-us", type=float, default=None, help="busy-poll window (default: faasmp's)")
    args = ap.parse_args()

    import redis

    import faasmp

    wanted = args.ops.split(",")
    ops: dict[str, Callable[[], Any]] = {}
    manager = echo_proc = None
    # Only the objects the chosen operations need: a live Value or Array
    # makes every pipe message also pull shared memory (an acquire).
    if "set" in wanted or "get" in wanted:
        manager = faasmp.Manager()
        d = manager.dict()
        d["k"] = 1
        ops["set"] = lambda: d.__setitem__("k", 1)
        ops["get"] = lambda: d["k"]
    if "lock" in wanted:
        lock = faasmp.Lock()

        def lock_cycle() -> None:
            lock.acquire()
            lock.release()

        ops["lock"] = lock_cycle
    if "value" in wanted:
        v = faasmp.Value("i", 0)

        def value_inc() -> None:
            with v.get_lock():
                v.value += 1

        ops["value"] = value_inc
    if "pipe" in wanted:
        faasmp.start_warm_pool(2)  # as run_all.py's pipe_rtt: the echo runs in a warm worker
        a, b = faasmp.Pipe()
        echo_proc = faasmp.Process(target=echo, args=(b,))
        echo_proc.start()

        def pipe_rtt() -> None:
            a.send_bytes(b"x")
            a.recv_bytes()

        ops["pipe"] = pipe_rtt
    session = faasmp.get_context().session
    session.state.ping()  # the run has started
    server_pid = session.server.process.pid
    state = session.state
    if args.spin_us is not None and hasattr(state.direct, "spin_window"):
        state.direct.spin_window = args.spin_us / 1e6
    r = redis.Redis.from_url(session.server.url)  # a separate connection for INFO
    if args.pin == "same":
        os.sched_setaffinity(0, {0})
        os.sched_setaffinity(server_pid, {0})
    elif args.pin == "split":
        os.sched_setaffinity(0, {0})
        os.sched_setaffinity(server_pid, {1})
    window = getattr(state.direct, "spin_window", 0.0) * 1e6
    print(f"pin={args.pin} spin window {window:.0f} us, load {os.getloadavg()[0]:.1f}")
    for rnd in range(args.rounds):
        for name in wanted:
            m = measure(name, ops[name], args.n, state, r, server_pid)
            print(
                f"  round {rnd} {name}: wall p50 {m['wall_p50']:.1f} p90 {m['wall_p90']:.1f} us, "
                f"cpu {m['cpu']:.1f} us (thread: user {m['user']:.1f} sys {m['sys']:.1f}), srv {m['srv']:.1f} us, cmds {m['cmds']:.2f}, "
                f"waits {m['waits']:.2f}, writes {m['writes']:.2f}, hits {m['hits']:.2f}, "
                f"misses {m['misses']:.2f}, vcsw {m['vcsw']:.2f}, "
                f"ivcsw {m['ivcsw']:.2f}, cpu# client {m['cpu_client']} server {m['cpu_server']}"
            )
    if echo_proc is not None:
        a.send_bytes(b"stop")
        echo_proc.join(60)
    if manager is not None:
        manager.shutdown()
    faasmp.shutdown()


if __name__ == "__main__":
    main()
