"""Time each pattern on faasmp (cold, then warm) and on the stdlib (docs/patterns.md).

python examples/patterns/compare.py
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bsp_shuffle
import map_pattern
import map_reduce
import parameter_server

import faasmp

CASES = {
    "map (36 tasks x ~10 ms)": lambda mp: map_pattern.run(mp),
    "map + tree reduce (16 chunks)": lambda mp: map_reduce.run(mp, map_reduce.corpus()),
    "BSP shuffle (4 workers)": lambda mp: bsp_shuffle.run(mp, bsp_shuffle.records(4)),
    "parameter server (4 workers)": lambda mp: parameter_server.run(mp),
}


def timed(fn, mp) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn(mp)
    return time.perf_counter() - t0


def main() -> None:
    print(f"{'pattern':<32} {'stdlib s':>9} {'faasmp 1st s':>13} {'faasmp warm s':>14}")
    ctx = multiprocessing.get_context("fork")
    for name, fn in CASES.items():
        std = timed(fn, ctx)
        first = timed(fn, faasmp)
        warm = min(timed(fn, faasmp) for _ in range(2))
        print(f"{name:<32} {std:>9.2f} {first:>13.2f} {warm:>14.2f}")
    faasmp.shutdown()


if __name__ == "__main__":
    main()
