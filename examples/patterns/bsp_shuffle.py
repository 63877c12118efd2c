"""Pattern 3 — BSP shuffle through Redis: group-by-key across workers.

N worker processes each own a partition of ``(key, value)`` records.
Superstep 1: each worker routes every record to the queue of the worker that
owns its key (``hash(key) % N``), then sends one end marker to every queue.
A barrier closes the superstep.  Superstep 2: each worker drains its own
queue until it has N end markers and sums the values per key; the partial
results go to a result queue.  On faasmp the queues (Redis lists) are the
shuffle medium, so workers never talk to each other directly — the way
serverless functions have to.  Run it with
``python examples/patterns/bsp_shuffle.py`` (faasmp) or ``--stdlib``.
"""

from __future__ import annotations

import random
import sys
import zlib
from collections import defaultdict
from typing import Any

END = None


def owner(key: str, n: int) -> int:
    """The worker that owns *key* (a stable hash: the same on every machine)."""
    return zlib.crc32(key.encode()) % n


def records(n_workers: int, per_worker: int = 500, seed: int = 3) -> list[list[tuple[str, int]]]:
    rnd = random.Random(seed)
    keys = [f"k{i}" for i in range(37)]
    return [[(rnd.choice(keys), rnd.randint(1, 9)) for _ in range(per_worker)] for _ in range(n_workers)]


def worker(rank: int, part: list[tuple[str, int]], inboxes: list[Any], barrier: Any, results: Any) -> None:
    n = len(inboxes)
    # superstep 1: route (batched per destination: one message per peer, not per record)
    outgoing: list[list[tuple[str, int]]] = [[] for _ in range(n)]
    for key, value in part:
        outgoing[owner(key, n)].append((key, value))
    for dest in range(n):
        inboxes[dest].put(outgoing[dest])
        inboxes[dest].put(END)
    barrier.wait(timeout=120)
    # superstep 2: reduce what this worker owns
    sums: dict[str, int] = defaultdict(int)
    ends = 0
    while ends < n:
        batch = inboxes[rank].get(timeout=120)
        if batch is END:
            ends += 1
            continue
        for key, value in batch:
            sums[key] += value
    results.put((rank, dict(sums)))


def run(mp: Any, parts: list[list[tuple[str, int]]]) -> dict[str, int]:
    n = len(parts)
    inboxes = [mp.Queue() for _ in range(n)]
    results = mp.Queue()
    barrier = mp.Barrier(n)
    procs = [mp.Process(target=worker, args=(r, parts[r], inboxes, barrier, results)) for r in range(n)]
    for p in procs:
        p.start()
    merged: dict[str, int] = {}
    for _ in range(n):
        rank, sums = results.get(timeout=180)
        assert all(owner(k, n) == rank for k in sums), "a key reached the wrong worker"
        merged.update(sums)  # owners are disjoint: no key appears twice
    for p in procs:
        p.join(60)
    return merged


def sequential(parts: list[list[tuple[str, int]]]) -> dict[str, int]:
    sums: dict[str, int] = defaultdict(int)
    for part in parts:
        for key, value in part:
            sums[key] += value
    return dict(sums)


def main(argv: list[str]) -> int:
    if "--stdlib" in argv:
        import multiprocessing as mp
    else:
        import faasmp as mp  # type: ignore[no-redef]
    parts = records(4)
    out = run(mp, parts)
    ok = out == sequential(parts)
    print(f"{len(out)} keys; matches the sequential result: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
