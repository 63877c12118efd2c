"""concurrent.futures.ProcessPoolExecutor with a failing task (no faasmp import).

One task raises; the program handles the exception from its future (and from
map) and keeps the other results.

Run: `python examples/executor_failure.py` or `faasmp run examples/executor_failure.py`.
"""

import concurrent.futures
import sys


def inverse(x):
    if x == 0:
        raise ZeroDivisionError(f"task {x} has no inverse")
    return round(1.0 / x, 6)


def main() -> int:
    results, errors = {}, {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as executor:
        futures = {executor.submit(inverse, x): x for x in range(-3, 4)}
        for future in concurrent.futures.as_completed(futures, timeout=120):
            x = futures[future]
            try:
                results[x] = future.result()
            except ZeroDivisionError as exc:
                errors[x] = f"{type(exc).__name__}: {exc}"
        mapped = []
        try:
            for value in executor.map(inverse, [4, 2, 0, 1], chunksize=2):
                mapped.append(value)
        except ZeroDivisionError as exc:
            mapped.append(f"map stopped: {exc}")
    print(f"results {dict(sorted(results.items()))}")
    print(f"failed {errors}")
    print(f"map {mapped}")
    ok = len(results) == 6 and list(errors) == [0] and mapped[:2] == [0.25, 0.5] and "stopped" in mapped[2]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
