"""tqdm's process_map (a ProcessPoolExecutor with a progress bar; no faasmp import).

Run: `python examples/tqdm_process_map.py` or `faasmp run examples/tqdm_process_map.py`.
"""

import sys

from tqdm.contrib.concurrent import process_map


def collatz_steps(n):
    steps = 0
    while n != 1:
        n = 3 * n + 1 if n % 2 else n // 2
        steps += 1
    return steps


def main() -> int:
    numbers = range(1, 3001)
    steps = process_map(collatz_steps, numbers, max_workers=2, chunksize=250, desc="collatz")
    expected = [collatz_steps(n) for n in numbers]
    longest = max(numbers, key=lambda n: steps[n - 1])
    print(f"total steps {sum(steps)}, longest chain starts at {longest} ({max(steps)} steps)")
    return 0 if steps == expected else 1


if __name__ == "__main__":
    sys.exit(main())
