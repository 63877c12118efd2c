"""Pattern 2 — map + reduce: word counts per chunk, merged by a tree of reducers.

The map tasks turn text chunks into ``Counter`` s; the reduce merges them
pairwise (a tree: log2(n) rounds of ``Pool.map`` over pairs), which keeps the
client from merging everything alone.  Run it with
``python examples/patterns/map_reduce.py`` (faasmp) or ``--stdlib``.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from typing import Any

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def corpus(n_chunks: int = 16, words_per_chunk: int = 2_000, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    return [" ".join(rnd.choice(WORDS) for _ in range(words_per_chunk)) for _ in range(n_chunks)]


def count_words(text: str) -> Counter[str]:
    return Counter(text.split())


def merge(pair: tuple[Counter[str], Counter[str]]) -> Counter[str]:
    a, b = pair
    return a + b


def run(mp: Any, chunks: list[str], processes: int = 4) -> Counter[str]:
    with mp.Pool(processes) as pool:
        partial = pool.map(count_words, chunks)  # map
        while len(partial) > 1:  # reduce, pairwise
            pairs = [(partial[i], partial[i + 1]) for i in range(0, len(partial) - 1, 2)]
            odd = [partial[-1]] if len(partial) % 2 else []
            partial = pool.map(merge, pairs) + odd
    return partial[0]


def sequential(chunks: list[str]) -> Counter[str]:
    return Counter(" ".join(chunks).split())


def main(argv: list[str]) -> int:
    if "--stdlib" in argv:
        import multiprocessing as mp
    else:
        import faasmp as mp  # type: ignore[no-redef]
    chunks = corpus()
    counts = run(mp, chunks)
    print(counts.most_common(3))
    ok = counts == sequential(chunks)
    print("matches the sequential result:", ok)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
