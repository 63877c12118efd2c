"""Per-call cost of faasmp's dependency detection (docs/scaling.md).

Compares plain ``cloudpickle.dumps`` with ``faasmp.deps.dumps_tracking`` +
``faasmp.deps.check`` (what ``faasmp.runtime.call.dumps_named`` does for every
function, Process and task it sends), p50 over many calls:

    python deploy/measure_deps_overhead.py
"""

from __future__ import annotations

import pickle
import statistics
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import numpy as np

from faasmp import deps
from faasmp.config import load


def uses_numpy(x: float) -> float:
    return float(np.sqrt(x))


class Model:
    def predict(self, x: float) -> float:
        return float(np.float64(x))


def p50_us(fn: Callable[[], Any], n: int = 3000) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    cfg = load()
    t0 = time.perf_counter()
    deps.check(deps.dumps_tracking(Model())[1], "x", config=cfg)
    cold = (time.perf_counter() - t0) * 1e6
    offset = 3.0
    cases: dict[str, Any] = {
        "function (numpy global)": uses_numpy,
        "closure lambda": lambda x: np.sqrt(x + offset),
        "class instance (method uses numpy)": Model(),
        "task chunk: tuple of 100 ints": (1, 2, "key", "map", list(range(100))),
    }
    print(f"{'payload':<36} {'cloudpickle us':>15} {'tracked+check us':>17} {'overhead us':>12}")
    for name, obj in cases.items():
        base = p50_us(lambda obj=obj: cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        tracked = p50_us(lambda obj=obj: deps.check(deps.dumps_tracking(obj)[1], "x", config=cfg))
        print(f"{name:<36} {base:>15.1f} {tracked:>17.1f} {tracked - base:>12.1f}")
    print(f"first check in a process (cold caches, includes classifying numpy): {cold / 1e3:.1f} ms")


if __name__ == "__main__":
    main()
