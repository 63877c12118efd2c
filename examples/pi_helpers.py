"""A local module the example imports: workers get it by value."""

import random


def count_inside(job: tuple[int, int]) -> int:
    seed, n = job
    rnd = random.Random(seed)
    return sum(1 for _ in range(n) if rnd.random() ** 2 + rnd.random() ** 2 <= 1.0)
