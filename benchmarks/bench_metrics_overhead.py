"""A/B cost of the statistics counters on the hottest paths: Pipe RTT and Lock acquire+release.

Runs each case in a fresh interpreter, alternating the two source trees
given (A = without counters, B = with), several rounds, so both see the
same machine load.  Reports the client's CPU time per operation (robust to
load: time the machine spends on other work does not count) and the wall
median per operation.

    python benchmarks/bench_metrics_overhead.py SRC_A SRC_B [rounds]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from typing import Any

N = int(os.environ.get("BENCH_N", "2000"))


def echo(conn: Any) -> None:
    while True:
        msg = conn.recv_bytes()
        if msg == b"stop":
            break
        conn.send_bytes(msg)


def child() -> None:
    import faasmp  # noqa: PLC0415

    out: dict[str, float] = {}
    a, b = faasmp.Pipe()
    p = faasmp.Process(target=echo, args=(b,))
    p.start()
    for _ in range(300):  # warm up
        a.send_bytes(b"x")
        a.recv_bytes()
    walls = []
    c0 = time.process_time()
    for _ in range(N):
        t0 = time.perf_counter()
        a.send_bytes(b"x")
        a.recv_bytes()
        walls.append(time.perf_counter() - t0)
    out["pipe_rtt_cpu_us"] = (time.process_time() - c0) / N * 1e6
    out["pipe_rtt_wall_us"] = statistics.median(walls) * 1e6
    a.send_bytes(b"stop")
    p.join(60)
    lock = faasmp.Lock()
    for _ in range(300):
        lock.acquire()
        lock.release()
    walls = []
    c0 = time.process_time()
    for _ in range(N):
        t0 = time.perf_counter()
        lock.acquire()
        lock.release()
        walls.append(time.perf_counter() - t0)
    out["lock_cpu_us"] = (time.process_time() - c0) / N * 1e6
    out["lock_wall_us"] = statistics.median(walls) * 1e6
    print(json.dumps(out))
    faasmp.shutdown()


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        from _common import ab_main

        ab_main(__file__, width=18)
