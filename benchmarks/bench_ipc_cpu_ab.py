"""Interleaved A/B of client CPU per operation on the IPC/sync hot paths, between two source trees.

Each case runs in a fresh interpreter, alternating the trees (A, B, then
B, A, ...), so both see the same machine load.  Reports, per operation, the
median over rounds of the client's CPU time (``time.process_time``: time
the machine spends on other work does not count) and of the wall median.

Operations: Pipe 1-byte round trip with an echoing Process, Lock
acquire+release, ``with v.get_lock(): v.value += 1``, Manager dict set / get;
``BENCH_OPS`` (comma-separated: pipe_rtt, lock, value_lock, manager) runs only some.

    BENCH_N=2000 python benchmarks/bench_ipc_cpu_ab.py OLD_TREE NEW_TREE [rounds]
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

N = int(os.environ.get("BENCH_N", "2000"))
OPS = set(os.environ.get("BENCH_OPS", "pipe_rtt,lock,value_lock,manager").split(","))


def echo(conn: Any) -> None:
    while True:
        msg = conn.recv_bytes()
        if msg == b"stop":
            break
        conn.send_bytes(msg)


def child() -> None:
    from _common import measure_cpu_wall  # noqa: PLC0415

    import faasmp  # noqa: PLC0415

    out: dict[str, float] = {}
    if "pipe_rtt" in OPS:
        a, b = faasmp.Pipe()
        p = faasmp.Process(target=echo, args=(b,))
        p.start()

        def rtt() -> None:
            a.send_bytes(b"x")
            a.recv_bytes()

        measure_cpu_wall(out, "pipe_rtt", rtt, N)
        a.send_bytes(b"stop")
        p.join(60)
    if "lock" in OPS:
        lock = faasmp.Lock()

        def cycle() -> None:
            lock.acquire()
            lock.release()

        measure_cpu_wall(out, "lock", cycle, N)
    if "value_lock" in OPS:
        v = faasmp.Value("i", 0)

        def incr() -> None:
            with v.get_lock():
                v.value += 1

        measure_cpu_wall(out, "value_lock", incr, N)
    if "manager" in OPS:
        manager = faasmp.Manager()
        d = manager.dict()
        d["k"] = 1
        measure_cpu_wall(out, "mgr_set", lambda: d.__setitem__("k", 1), N)
        measure_cpu_wall(out, "mgr_get", lambda: d["k"], N)
        manager.shutdown()
    print(json.dumps(out))
    faasmp.shutdown()


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        from _common import ab_main

        ab_main(__file__, width=20)
