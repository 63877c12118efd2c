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
import sys
from typing import Any

N = int(os.environ.get("BENCH_N", "2000"))


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
    a, b = faasmp.Pipe()
    p = faasmp.Process(target=echo, args=(b,))
    p.start()

    def rtt() -> None:
        a.send_bytes(b"x")
        a.recv_bytes()

    measure_cpu_wall(out, "pipe_rtt", rtt, N)
    a.send_bytes(b"stop")
    p.join(60)
    lock = faasmp.Lock()

    def cycle() -> None:
        lock.acquire()
        lock.release()

    measure_cpu_wall(out, "lock", cycle, N)
    print(json.dumps(out))
    faasmp.shutdown()


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        from _common import ab_main

        ab_main(__file__, width=18)
