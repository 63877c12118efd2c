"""Evolution strategies with a Pool and a Manager dict (no faasmp import).

Each generation the master samples a seeded population of perturbations; Pool
workers evaluate them and record each fitness in a shared Manager dict; the
master reads the dict and moves the parameters along the fitness-weighted
perturbations (as in OpenAI-ES).  Deterministic given the seeds.

Run: `python examples/evolution_strategies.py` or `faasmp run examples/evolution_strategies.py`.
"""

import multiprocessing
import random
import sys

DIM = 4
POPULATION = 8
GENERATIONS = 6
SIGMA = 0.1
ALPHA = 0.05
OPTIMUM = [0.5, -1.0, 2.0, 0.0]


def fitness(params):
    return -sum((p - o) ** 2 for p, o in zip(params, OPTIMUM, strict=True))


def noise(seed):
    rnd = random.Random(seed)
    return [rnd.gauss(0.0, 1.0) for _ in range(DIM)]


def evaluate(job):
    scores, generation, member, params = job
    eps = noise(generation * 1000 + member)
    scores[(generation, member)] = fitness([p + SIGMA * e for p, e in zip(params, eps, strict=True)])
    return member


def main() -> int:
    params = [0.0] * DIM
    start = fitness(params)
    with multiprocessing.Manager() as manager, multiprocessing.Pool(2) as pool:
        scores = manager.dict()
        for gen in range(GENERATIONS):
            done = pool.map(evaluate, [(scores, gen, m, params) for m in range(POPULATION)])
            assert done == list(range(POPULATION))
            fit = [scores[(gen, m)] for m in range(POPULATION)]
            mean = sum(fit) / POPULATION
            std = (sum((f - mean) ** 2 for f in fit) / POPULATION) ** 0.5 or 1.0
            for m in range(POPULATION):
                eps = noise(gen * 1000 + m)
                weight = (fit[m] - mean) / std
                params = [
                    p + ALPHA / (POPULATION * SIGMA) * weight * e for p, e in zip(params, eps, strict=True)
                ]
        recorded = len(scores)
    end = fitness(params)
    print(f"fitness {start:.4f} -> {end:.6f} after {GENERATIONS} generations")
    print(f"params {[round(p, 6) for p in params]}")
    print(f"fitness values recorded in the Manager dict: {recorded}")
    return 0 if end > start and recorded == POPULATION * GENERATIONS else 1


if __name__ == "__main__":
    sys.exit(main())
