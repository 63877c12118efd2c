"""Monte Carlo pi with an ordinary multiprocessing Pool (no faasmp import).

Run it with `python examples/montecarlo_pi.py` or `faasmp run examples/montecarlo_pi.py`.
"""

import multiprocessing
import random
import sys

from pi_helpers import count_inside


def main(tasks: int, points: int) -> int:
    with multiprocessing.Pool(2) as pool:
        counts = pool.map(count_inside, [(seed, points) for seed in range(tasks)])
    pi = 4.0 * sum(counts) / (tasks * points)
    print(f"pi ~= {pi:.4f}")
    print(f"checksum {sum(counts)}")
    return 0 if abs(pi - 3.1416) < 0.05 else 3


if __name__ == "__main__":
    random.seed(0)
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    sys.exit(main(tasks, 50_000))
