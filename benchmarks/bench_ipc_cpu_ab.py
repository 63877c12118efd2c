"""Interleaved A/B of client CPU per operation on the IPC/sync hot paths, between two source trees.

Each case runs in a fresh interpreter, alternating the trees (A, B, then
B, A, ...), so both see the same machine load.  Reports, per operation, the
median over rounds of the client's CPU time (``time.process_time``: time
the machine spends on other work does not count) and of the wall median.

Operations: Pipe 1-byte round trip with an echoing Process, Lock
acquire+release, ``with v.get_lock(): v.value += 1``, Manager dict set / get.

    BENCH_N=2000 python benchmarks/bench_ipc_cpu_ab.py OLD_TREE NEW_TREE [rounds]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

N = int(os.environ.get("BENCH_N", "2000"))


def echo(conn: Any) -> None:
    while True:
        msg = conn.recv_bytes()
        if msg == b"stop":
            break
        conn.send_bytes(msg)


def _measure(out: dict[str, float], name: str, op: Callable[[], Any]) -> None:
    for _ in range(300):  # warm-up: connections, scripts, caches
        op()
    walls = []
    c0 = time.process_time()
    for _ in range(N):
        t0 = time.perf_counter()
        op()
        walls.append(time.perf_counter() - t0)
    out[f"{name}_cpu_us"] = (time.process_time() - c0) / N * 1e6
    out[f"{name}_wall_us"] = statistics.median(walls) * 1e6


def child() -> None:
    import faasmp  # noqa: PLC0415

    out: dict[str, float] = {}
    a, b = faasmp.Pipe()
    p = faasmp.Process(target=echo, args=(b,))
    p.start()

    def rtt() -> None:
        a.send_bytes(b"x")
        a.recv_bytes()

    _measure(out, "pipe_rtt", rtt)
    a.send_bytes(b"stop")
    p.join(60)
    lock = faasmp.Lock()

    def cycle() -> None:
        lock.acquire()
        lock.release()

    _measure(out, "lock", cycle)
    v = faasmp.Value("i", 0)

    def incr() -> None:
        with v.get_lock():
            v.value += 1

    _measure(out, "value_lock", incr)
    manager = faasmp.Manager()
    d = manager.dict()
    d["k"] = 1
    _measure(out, "mgr_set", lambda: d.__setitem__("k", 1))
    _measure(out, "mgr_get", lambda: d["k"])
    manager.shutdown()
    print(json.dumps(out))
    faasmp.shutdown()


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        from _common import ab_main

        ab_main(__file__, width=20)
