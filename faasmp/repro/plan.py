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
    #: What runs on the client (not billed): baselines, and how a figure is derived when
    #: the client lacks the cores to measure it.
    client: str = ""
    #: Extra work of the notebook's scaling curve or figure (its function-seconds are in *busy_s*).
    extra: str = ""


#: Full-mode plans, keyed like :data:`faasmp.repro.EXPERIMENTS`.
PLANS: dict[str, Plan] = {
    "overheads": Plan(
        "10 cold and 50 warm calls of an identity function",
        11 + 128,
        60 * 1.0 + 7 * (1 + 8 + 32 + 64 + 128) * 0.1,
        "<= 1 s billed per call (cold start included); 0.1 s per object-storage task",
        extra="Fig 4.1: 7 maps of one 64 KiB task per worker on 1, 8, 32, 64 and 128 workers, "
        "data via Redis and via object storage",
    ),
    "sleep_map": Plan("Pool.map of 1024 functions that sleep 5 s", 1024, 1024 * 5.0, "the sleep itself"),
    "pipes": Plan(
        "10,000 1-byte round trips and 500 1 MiB messages over a Pipe",
        2,
        10_000 * 0.004 + 500 * 0.1,
        "4 ms per round trip, 0.1 s per MiB (both ends billed)",
        extra="Fig 4.3: the round trip of each of the 10,000 messages (no extra work)",
    ),
    "montecarlo_pi": Plan(
        "3.2e9 points on 1, 8, 32, 64 and 128 workers",
        1 + 8 + 32 + 64 + 128,
        5 * 3.2e9 / 2e7,
        "2e7 numpy points/s per function, each worker count sampling all 3.2e9 points",
        client="the same map on a stdlib Pool at every count up to twice the client's cores; the VM time "
        "at 128 workers is derived from the client's measured 1-core time / 128 when it has fewer cores "
        "(labelled 'derived' in the table)",
        extra="the scaling curve is this run's own times (no extra work)",
    ),
    "storage": Plan(
        "1000 workers each writing and reading 4 objects of 256 MB",
        1000,
        1000 * 4 * 256 * 2 / 100,
        "100 MB/s per function to object storage (object-storage requests are billed apart)",
    ),
    "shared_sort": Plan(
        "sort of 5,000,000 values by 64 processes in a shared Array, copies and pipes",
        64 * 3 + 233 * 2,
        64 * 3 * 10.0 + 10 * 233 * 1.0,
        "10 s per process per variant",
        client="the pipes variant on the stdlib (fork) on the client",
        extra="scaling curve: 2 sorts through pipes on each of 1, 8, 32, 64 and 128 processes",
    ),
    "evolution": Plan(
        "OpenAI-ES: 50 generations of 1000 CartPole-v1 episodes (<= 1000 steps) on 1000 workers",
        1000 + 1 + 10 + 100 + 1000,
        50 * 1000 * 1000 * 50e-6 + 4 * 2 * 1000 * 2 * 1000 * 50e-6,
        "50 us per environment step and policy evaluation",
        client="the serial run and a stdlib Pool on the client's cores, generation 1 only; their "
        "50-generation times are derived (x faasmp's total / its generation 1), labelled 'derived'",
        extra="scaling curve: one generation's scoring (1000 mirrored pairs), twice, on each of "
        "1, 10, 100 and 1000 workers",
    ),
    "sentiment": Plan(
        "sentiment scoring of 2,000,000 texts on 64 workers",
        64 + 233,
        2_000_000 / 20_000 + 5 * 2 * 200_000 / 20_000,
        "20,000 texts/s per function",
        client="serial scoring and a stdlib Pool of 64 on the client",
        extra="scaling curve: 200,000 texts, twice, on each of 1, 8, 32, 64 and 128 workers",
    ),
    "gridsearch": Plan(
        "GridSearchCV: 48 candidates x 5 folds of TF-IDF + SGDClassifier on 20,000 documents, 64 workers",
        64,
        48 * 5 * 1.0,
        "1 s per fit",
        client="the serial search and loky with 64 jobs on the client",
        extra="the scaling curve is this run's own searches (1 and 64 workers; no extra work)",
    ),
    "rl_pipes": Plan(
        "AsyncVectorEnv of 64 CartPole processes x 200 iterations x 2000 steps over Pipes",
        64 + 233,
        64 * 200 * 2000 * 20e-6 + 5 * 64 * 2000 * 20e-6,
        "20 us per environment step",
        client="the same training on the stdlib (fork) on the client",
        extra="scaling curve: 128,000 transitions with 1, 8, 32, 64 and 128 environments",
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
        if plan.extra:
            lines.append(f"  also: {plan.extra}")
        if plan.client:
            lines.append(f"  on the client (not billed): {plan.client}")
        total_s += plan.busy_s
        if usd is None:
            priced = False
        else:
            total_usd += usd
    total = f"~${total_usd:.4f}" if priced else "not priced (a provider has no price)"
    lines.append(f"total: ~{total_s:,.0f} function-s, {total} (idle warm time and storage not included)")
    return "\n".join(lines)
