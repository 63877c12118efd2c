"""Pattern 4 — parameter server: SGD for linear regression with shared weights.

The weights live in one shared ``Array`` (on faasmp each process holds a
local copy: taking the array's lock pulls what others released, releasing it
ships the changed weights); each worker owns a shard of the data, and for
every minibatch it reads the current weights, computes a gradient with numpy and applies it under the array's
lock — the classic parameter-server loop (synchronous per update, asynchronous
across workers, like Hogwild with a lock).  Run it with
``python examples/patterns/parameter_server.py`` (faasmp) or ``--stdlib``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


def make_data(n: int = 2_000, d: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    true_w = rng.normal(size=d + 1)  # last entry: the bias
    y = x @ true_w[:-1] + true_w[-1] + 0.01 * rng.normal(size=n)
    return x, y, true_w


def sgd_worker(
    weights: Any, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, batch: int, seed: int
) -> int:
    rng = np.random.default_rng(seed)
    xb = np.hstack([x, np.ones((len(x), 1))])
    updates = 0
    for _ in range(epochs):
        order = rng.permutation(len(xb))
        for start in range(0, len(xb), batch):
            idx = order[start : start + batch]
            with weights.get_lock():  # read-modify-write of the shared parameters
                w = np.array(weights[:])
                grad = 2.0 * xb[idx].T @ (xb[idx] @ w - y[idx]) / len(idx)
                weights[:] = (w - lr * grad).tolist()
            updates += 1
    return updates


def run(mp: Any, workers: int = 4, epochs: int = 3, lr: float = 0.05, batch: int = 64) -> np.ndarray:
    x, y, _ = make_data()
    weights = mp.Array("d", x.shape[1] + 1)  # zeros; lock=True: get_lock() guards updates
    shards = np.array_split(np.arange(len(x)), workers)
    procs = [
        mp.Process(target=sgd_worker, args=(weights, x[s], y[s], epochs, lr, batch, i))
        for i, s in enumerate(shards)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
        if p.exitcode != 0:
            raise RuntimeError(f"{p.name} failed with exit code {p.exitcode}")
    return np.array(weights[:])


def sequential() -> np.ndarray:
    """The least-squares solution the SGD should reach."""
    x, y, _ = make_data()
    xb = np.hstack([x, np.ones((len(x), 1))])
    return np.linalg.lstsq(xb, y, rcond=None)[0]


def main(argv: list[str]) -> int:
    if "--stdlib" in argv:
        import multiprocessing as mp
    else:
        import faasmp as mp  # type: ignore[no-redef]
    w = run(mp)
    ref = sequential()
    err = float(np.max(np.abs(w - ref)))
    print(f"weights {np.round(w, 3)}\nleast squares {np.round(ref, 3)}\nmax |diff| {err:.4f}")
    return 0 if err < 0.05 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
