"""Pipe round trip and Pipe/Queue throughput: faasmp (client <-> remote Process) vs stdlib (fork).

RTT: 1-byte ``send_bytes``/``recv_bytes`` echo with a process on the other
side.  Throughput: 1 MiB messages, producer in this process, consumer in the
other one, timed until the consumer has received everything.  Several rounds;
the table shows the median round and the best one (shared machines are noisy).

    python benchmarks/bench_ipc.py [stdlib] [faasmp]
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
from typing import Any

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
N_RTT = int(os.environ.get("BENCH_RTT", "1000"))
N_MB = int(os.environ.get("BENCH_MB", "50"))
MB = os.urandom(1 << 20)


def echo(conn: Any) -> None:
    while True:
        msg = conn.recv_bytes()
        if msg == b"stop":
            break
        conn.send_bytes(msg)


def sink(conn: Any) -> None:
    while True:
        msg = conn.recv_bytes()
        if msg == b"stop":
            break
        if msg == b"sync":
            conn.send_bytes(b"ok")


def queue_sink(q: Any, done: Any) -> None:
    while True:
        msg = q.get()
        if msg == b"stop":
            break
        if msg == b"sync":
            done.put(b"ok")


def rtt_rounds(conn: Any) -> list[float]:
    for _ in range(200):
        conn.send_bytes(b"x")
        conn.recv_bytes()
    p50s = []
    for _ in range(ROUNDS):
        ts = []
        for _ in range(N_RTT):
            t0 = time.perf_counter()
            conn.send_bytes(b"x")
            conn.recv_bytes()
            ts.append(time.perf_counter() - t0)
        p50s.append(statistics.median(ts) * 1e6)
    return p50s


def pipe_mbps(conn: Any) -> list[float]:
    out = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(N_MB):
            conn.send_bytes(MB)
        conn.send_bytes(b"sync")
        conn.recv_bytes()
        out.append(N_MB / (time.perf_counter() - t0))
    return out


def queue_mbps(q: Any, done: Any) -> list[float]:
    out = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(N_MB):
            q.put(MB)
        q.put(b"sync")
        done.get()
        out.append(N_MB / (time.perf_counter() - t0))
    return out


def run(label: str, mod: Any) -> dict[str, list[float]]:
    res: dict[str, list[float]] = {}
    a, b = mod.Pipe()
    p = mod.Process(target=echo, args=(b,))
    p.start()
    res["rtt"] = rtt_rounds(a)
    a.send_bytes(b"stop")
    p.join(60)
    a, b = mod.Pipe()
    p = mod.Process(target=sink, args=(b,))
    p.start()
    res["pipe"] = pipe_mbps(a)
    a.send_bytes(b"stop")
    p.join(60)
    q, done = mod.Queue(), mod.Queue()
    p = mod.Process(target=queue_sink, args=(q, done))
    p.start()
    res["queue"] = queue_mbps(q, done)
    q.put(b"stop")
    p.join(60)
    return res


def main() -> None:
    which = sys.argv[1:] or ["stdlib", "faasmp"]
    results = {}
    if "stdlib" in which:
        results["stdlib (fork)"] = run("stdlib", multiprocessing.get_context("fork"))
    if "faasmp" in which:
        from faasmp.context import FaasContext  # noqa: PLC0415

        ctx = FaasContext()
        ctx.start_warm_pool(2)
        results["faasmp"] = run("faasmp", ctx)
        ctx.shutdown()
    print(f"{ROUNDS} rounds; median round (best round)")
    print(f"{'':14} {'Pipe 1-byte RTT p50 (µs)':>26} {'Pipe 1 MiB (MB/s)':>20} {'Queue 1 MiB (MB/s)':>20}")
    for label, r in results.items():
        rtt = f"{statistics.median(r['rtt']):.0f} ({min(r['rtt']):.0f})"
        pipe = f"{statistics.median(r['pipe']):.0f} ({max(r['pipe']):.0f})"
        queue = f"{statistics.median(r['queue']):.0f} ({max(r['queue']):.0f})"
        print(f"{label:14} {rtt:>26} {pipe:>20} {queue:>20}")


if __name__ == "__main__":
    main()
