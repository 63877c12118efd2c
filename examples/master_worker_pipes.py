"""A master/worker loop over Pipes (no faasmp import), in the shape of PPO.

Each worker owns a seeded "environment"; every round the master sends the
current parameter over a Pipe, each worker answers with a gradient estimate,
and the master updates the parameter.  Deterministic: the result is the same
under any scheduling.

Run: `python examples/master_worker_pipes.py` or `faasmp run examples/master_worker_pipes.py`.
"""

import multiprocessing
import random
import sys

N_WORKERS = 2
ROUNDS = 15
TARGET = 3.0


def worker(conn, seed):
    rnd = random.Random(seed)
    while True:
        msg = conn.recv()
        if msg == "stop":
            conn.send(("bye", seed))
            conn.close()
            return
        theta = msg
        samples = [TARGET + rnd.gauss(0.0, 0.1) for _ in range(50)]
        grad = sum(theta - s for s in samples) / len(samples)
        conn.send(grad)


def main() -> int:
    pipes, procs = [], []
    for seed in range(N_WORKERS):
        parent, child = multiprocessing.Pipe()
        p = multiprocessing.Process(target=worker, args=(child, seed))
        p.start()
        pipes.append(parent)
        procs.append(p)
    theta = 0.0
    for _round in range(ROUNDS):
        for conn in pipes:
            conn.send(theta)
        grads = [conn.recv() for conn in pipes]
        theta -= 0.5 * sum(grads) / len(grads)
    for conn in pipes:
        conn.send("stop")
    byes = sorted(conn.recv()[1] for conn in pipes)
    for p in procs:
        p.join(60)
    print(f"theta after {ROUNDS} rounds: {theta:.6f} (target {TARGET})")
    print(f"workers said bye: {byes}, exit codes {[p.exitcode for p in procs]}")
    return 0 if abs(theta - TARGET) < 0.05 and byes == list(range(N_WORKERS)) else 1


if __name__ == "__main__":
    sys.exit(main())
