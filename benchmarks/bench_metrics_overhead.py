"""A/B cost of the statistics counters on the hottest paths: Pipe RTT and Lock acquire+release.

Runs each case in a fresh interpreter, alternating the two source trees
given (A = without counters, B = with), several rounds, so both see the
same machine load.  Reports the client's CPU time per operation (robust to
load: time the machine spends on other work does not count) and the wall
median per operation.  The measuring child is bench_ipc_cpu_ab.py's, with
only its Pipe and Lock operations.

    python benchmarks/bench_metrics_overhead.py SRC_A SRC_B [rounds]
"""

from __future__ import annotations

import os
from pathlib import Path

if __name__ == "__main__":
    from _common import ab_main

    os.environ["BENCH_OPS"] = "pipe_rtt,lock"  # inherited by every child run
    ab_main(str(Path(__file__).with_name("bench_ipc_cpu_ab.py")), width=18)
