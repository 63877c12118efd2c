"""What ``faasmp repro ... --full --dry-run`` would run, and what it would roughly cost.

Each experiment's full mode is described here by the work it submits (the sizes are the
ones its ``run(full=True)`` uses) and by a stated per-unit rate that turns that work into
function-seconds.  The rates are assumptions written next to each plan, not measurements
of a cloud, so the estimate is an order of magnitude to budget with: the money comes from
:mod:`faasmp.cost`'s price table for the configured backend (``aws_lambda`` list prices
for localhost), with the configured worker memory.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from faasmp import cost


@dataclasses.dataclass(frozen=True)
class Plan:
    """One experiment's full-mode work: what runs, on how many functions, for how long."""

    what: str
    #: Function invocations (distinct workers) the faasmp runs start.
    invocations: int
    #: Function-seconds the faasmp runs keep workers busy (from *assumption*).
    busy_s: float
    #: The rate behind *busy_s*, so the reader can redo the estimate with their own.
    assumption: str


#: Full-mode plans, keyed like :data:`faasmp.repro.EXPERIMENTS`.
PLANS: dict[str, Plan] = {
    "overheads": Plan(
        "10 cold and 50 warm calls of an identity function",
        11,
        60 * 1.0,
        "<= 1 s billed per call (cold start included)",
    ),
    "sleep_map": Plan("Pool.map of 1024 functions that sleep 5 s", 1024, 1024 * 5.0, "the sleep itself"),
    "pipes": Plan(
        "10,000 1-byte round trips and 500 1 MiB messages over a Pipe",
        2,
        10_000 * 0.004 + 500 * 0.1,
        "4 ms per round trip, 0.1 s per MiB (both ends billed)",
    ),
    "montecarlo_pi": Plan(
        "3.2e9 points on 1, 8, 32, 64 and 128 workers (serial and stdlib runs on the client)",
        1 + 8 + 32 + 64 + 128,
        5 * 3.2e9 / 2e7,
        "2e7 numpy points/s per function, each worker count sampling all 3.2e9 points",
    ),
    "storage": Plan(
        "1000 workers each writing and reading 4 objects of 256 MB",
        1000,
        1000 * 4 * 256 * 2 / 100,
        "100 MB/s per function to object storage (object-storage requests are billed apart)",
    ),
    "shared_sort": Plan(
        "sort of 5,000,000 values by 64 processes in a shared Array, copies and pipes",
        64 * 3,
        64 * 3 * 10.0,
        "10 s per process per variant",
    ),
    "evolution": Plan(
        "OpenAI-ES: 50 generations of 1000 CartPole-v1 episodes (<= 1000 steps) on 1000 workers",
        1000,
        50 * 1000 * 1000 * 50e-6,
        "50 us per environment step and policy evaluation",
    ),
    "sentiment": Plan(
        "sentiment scoring of 2,000,000 texts on 64 workers",
        64,
        2_000_000 / 20_000,
        "20,000 texts/s per function",
    ),
    "gridsearch": Plan(
        "GridSearchCV: 48 candidates x 5 folds of TF-IDF + SGDClassifier on 20,000 documents, 64 workers",
        64,
        48 * 5 * 1.0,
        "1 s per fit",
    ),
    "rl_pipes": Plan(
        "AsyncVectorEnv of 64 CartPole processes x 200 iterations x 2000 steps over Pipes",
        64,
        64 * 200 * 2000 * 20e-6,
        "20 us per environment step",
    ),
}


def estimate(names: list[str], config: Any = None) -> list[tuple[str, Plan, float, float | None]]:
    """(name, plan, GB-seconds, USD or None without a price) for each of *names*."""
    if config is None:
        import faasmp  # noqa: PLC0415

        config = faasmp.get_context().config
    provider = cost.REFERENCE_PROVIDER if config.is_local else config.backend
    provider = cost.ALIASES.get(provider, provider)
    price = cost.price_table(config.prices).get(provider)
    mem_gb = cost.worker_memory_mb(config) / 1024
    vcpus = cost.worker_vcpus(config)
    out = []
    for name in names:
        plan = PLANS[name]
        gb_s = plan.busy_s * mem_gb
        usd = None
        if price is not None:
            usd = gb_s * price.gb_second + plan.busy_s * vcpus * price.vcpu_second
            usd += plan.invocations * price.request
        out.append((name, plan, gb_s, usd))
    return out


def dry_run(names: list[str], config: Any = None) -> str:
    """The text ``faasmp repro NAMES --full --dry-run`` prints: one block per experiment and a total."""
    if config is None:
        import faasmp  # noqa: PLC0415

        config = faasmp.get_context().config
    provider = cost.REFERENCE_PROVIDER if config.is_local else config.backend
    mem_mb = cost.worker_memory_mb(config)
    lines = [
        f"dry run: full mode on backend {config.backend!r}, priced as {provider} "
        f"({cost.PRICES_AS_OF}), {mem_mb} MB per worker; nothing is started",
    ]
    total_usd = 0.0
    total_s = 0.0
    priced = True
    for name, plan, gb_s, usd in estimate(names, config):
        money = f"~${usd:.4f}" if usd is not None else "no price for this provider"
        lines += [
            f"== {name} ==",
            f"  runs: {plan.what}",
            f"  {plan.invocations} invocations, ~{plan.busy_s:,.0f} function-s, ~{gb_s:,.0f} GB-s: {money}",
            f"  assuming {plan.assumption}",
        ]
        total_s += plan.busy_s
        if usd is None:
            priced = False
        else:
            total_usd += usd
    total = f"~${total_usd:.4f}" if priced else "not priced (a provider has no price)"
    lines.append(f"total: ~{total_s:,.0f} function-s, {total} (idle warm time and storage not included)")
    return "\n".join(lines)
