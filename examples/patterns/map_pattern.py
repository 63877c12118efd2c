"""Pattern 1 — map: one independent task per input (the PyWren "embarrassingly parallel" map).

Each task scores one candidate of a small grid: a pure function of its
input, so the tasks need no shared state at all.  Run it with
``python examples/patterns/map_pattern.py`` (faasmp) or ``--stdlib``.
"""

from __future__ import annotations

import math
import sys
from typing import Any


def score(params: tuple[float, float]) -> float:
    """A deliberately CPU-bound objective (a few ms): numerical integral of a damped wave."""
    freq, damping = params
    n = 20_000
    step = 10.0 / n
    return sum(math.exp(-damping * i * step) * math.sin(freq * i * step) * step for i in range(n))


def grid(size: int) -> list[tuple[float, float]]:
    return [(0.5 + i * 0.25, 0.1 + j * 0.05) for i in range(size) for j in range(size)]


def run(mp: Any, size: int = 6, processes: int = 4) -> list[float]:
    """Score the grid with ``mp.Pool`` (*mp*: a faasmp context or the multiprocessing module)."""
    with mp.Pool(processes) as pool:
        return pool.map(score, grid(size), chunksize=2)


def sequential(size: int = 6) -> list[float]:
    return [score(p) for p in grid(size)]


def main(argv: list[str]) -> int:
    if "--stdlib" in argv:
        import multiprocessing as mp
    else:
        import faasmp as mp  # type: ignore[no-redef]
    out = run(mp)
    best = max(range(len(out)), key=out.__getitem__)
    print(f"best of {len(out)}: params {grid(6)[best]} score {out[best]:.4f}")
    ok = all(math.isclose(a, b) for a, b in zip(out, sequential(), strict=True))
    print("matches the sequential result:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
