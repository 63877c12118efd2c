"""A producer/consumer pipeline over multiprocessing Queues (no faasmp import).

producer -> tasks Queue -> 2 workers (square) -> results Queue -> consumer,
with one None sentinel per worker.  The consumer checks every item arrived
once and sends its summary back on a third queue.

Run: `python examples/pipeline_queues.py` or `faasmp run examples/pipeline_queues.py`.
"""

import multiprocessing
import sys

N_ITEMS = 200
N_WORKERS = 2


def producer(tasks, n):
    for i in range(n):
        tasks.put(i)
    for _ in range(N_WORKERS):
        tasks.put(None)


def square_worker(tasks, results):
    while True:
        item = tasks.get()
        if item is None:
            results.put(None)
            return
        results.put((item, item * item))


def consumer(results, summary):
    seen, total, done = set(), 0, 0
    while done < N_WORKERS:
        item = results.get()
        if item is None:
            done += 1
            continue
        i, sq = item
        assert sq == i * i and i not in seen
        seen.add(i)
        total += sq
    summary.put((len(seen), total))


def main() -> int:
    tasks = multiprocessing.Queue()
    results = multiprocessing.Queue()
    summary = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=producer, args=(tasks, N_ITEMS))]
    procs += [multiprocessing.Process(target=square_worker, args=(tasks, results)) for _ in range(N_WORKERS)]
    procs.append(multiprocessing.Process(target=consumer, args=(results, summary)))
    for p in procs:
        p.start()
    count, total = summary.get(timeout=120)
    for p in procs:
        p.join(60)
    expected = sum(i * i for i in range(N_ITEMS))
    print(f"items {count}, sum of squares {total}, expected {expected}")
    print(f"exit codes {[p.exitcode for p in procs]}")
    return 0 if (count, total) == (N_ITEMS, expected) and all(p.exitcode == 0 for p in procs) else 1


if __name__ == "__main__":
    sys.exit(main())
