"""What a job would cost on a function platform, from :mod:`faasmp.stats` records.

Per job: the **invocations** it used (distinct worker hosts in its records;
on cloud backends one host is one function invocation) and the
**GB-seconds** its tasks kept workers busy (worker memory * the time from a
worker taking a task to finishing it, setup + run).  With a price table the
estimate becomes money::

    cost = GB-s * gb_second + vCPU-s * vcpu_second + invocations * request

What it leaves out, on purpose: warm workers waiting for work are billed too
(up to ``idle_timeout`` per invocation, reported as ``idle_bound_gb_s``), and
a cold start's own time; storage, Redis and network transfer are not
function charges.  It is an estimate from *list prices* — check your
provider's current prices and free tiers.

Default prices (USD, list prices from the providers' public pricing pages as
known in 2025, not re-checked since — check your provider; override with the ``prices`` setting, e.g.
``FAASMP_PRICES='{"aws_lambda": {"gb_second": 1.33e-05}}'``):

================  ===========  ============  ============  ======================================
provider          gb_second    vcpu_second   request       source
================  ===========  ============  ============  ======================================
aws_lambda        1.66667e-05  0             2.0e-07       aws.amazon.com/lambda/pricing (x86)
gcp_cloudrun      2.5e-06      2.4e-05       4.0e-07       cloud.google.com/run/pricing (tier 1)
gcp_functions     2.5e-06      2.4e-05       4.0e-07       cloud.google.com/functions/pricing
azure_functions   1.6e-05      0             2.0e-07       azure.microsoft.com pricing (consumption)
azure_containers  3.0e-06      2.4e-05       4.0e-07       Azure Container Apps (consumption)
code_engine       3.56e-06     3.431e-05     0             cloud.ibm.com/docs/codeengine pricing
================  ===========  ============  ============  ======================================

Aliases: ``azure`` = ``azure_functions``, ``ibm_ce`` = ``code_engine``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from .stats import TaskRecord

PRICES_AS_OF = "2025 list prices, check your provider"

#: Default price table (see the module docstring for sources).
DEFAULT_PRICES: dict[str, dict[str, float]] = {
    "aws_lambda": {"gb_second": 1.66667e-05, "vcpu_second": 0.0, "request": 2.0e-07},
    "gcp_cloudrun": {"gb_second": 2.5e-06, "vcpu_second": 2.4e-05, "request": 4.0e-07},
    "gcp_functions": {"gb_second": 2.5e-06, "vcpu_second": 2.4e-05, "request": 4.0e-07},
    "azure_functions": {"gb_second": 1.6e-05, "vcpu_second": 0.0, "request": 2.0e-07},
    "azure_containers": {"gb_second": 3.0e-06, "vcpu_second": 2.4e-05, "request": 4.0e-07},
    "code_engine": {"gb_second": 3.56e-06, "vcpu_second": 3.431e-05, "request": 0.0},
}
ALIASES = {"azure": "azure_functions", "ibm_ce": "code_engine", "gcp": "gcp_cloudrun", "aws": "aws_lambda"}
#: Lithops' default ``runtime_memory`` (MB) per backend, when the config names none.
DEFAULT_MEMORY_MB = {
    "aws_lambda": 256,
    "gcp_cloudrun": 256,
    "gcp_functions": 256,
    "azure_functions": 2048,
    "azure_containers": 512,
    "code_engine": 256,
    "k8s": 512,
    "knative": 256,
    "localhost": 256,
}
#: Lithops' default ``runtime_cpu`` per backend (vCPUs billed per second).
DEFAULT_VCPUS = {"gcp_cloudrun": 0.25, "code_engine": 0.125, "k8s": 1.0, "azure_containers": 0.5}
#: Provider whose prices a localhost run is shown at ("what would this cost there").
REFERENCE_PROVIDER = "aws_lambda"


@dataclasses.dataclass(frozen=True)
class Price:
    gb_second: float
    vcpu_second: float = 0.0
    request: float = 0.0


def price_table(overrides: Mapping[str, Any] | None = None) -> dict[str, Price]:
    """The default prices with *overrides* (``{provider: {field: value}}``) merged over them."""
    table = {k: dict(v) for k, v in DEFAULT_PRICES.items()}
    for name, fields in (overrides or {}).items():
        key = ALIASES.get(name, name)
        if not isinstance(fields, Mapping):
            raise TypeError(f"prices[{name!r}] must be a mapping of gb_second/vcpu_second/request")
        unknown = set(fields) - {"gb_second", "vcpu_second", "request"}
        if unknown:
            raise ValueError(
                f"prices[{name!r}]: unknown field(s) {sorted(unknown)}; "
                "known: gb_second, vcpu_second, request"
            )
        table.setdefault(key, {"gb_second": 0.0}).update({k: float(v) for k, v in fields.items()})
    return {k: Price(**v) for k, v in table.items()}


def worker_memory_mb(config: Any) -> int:
    """Memory of one worker: ``worker_memory_mb``, else Lithops' ``runtime_memory``, else the default."""
    if getattr(config, "worker_memory_mb", 0):
        return int(config.worker_memory_mb)
    section = dict(config.lithops_config.get(config.backend, {}) or {})
    if section.get("runtime_memory"):
        return int(section["runtime_memory"])
    return DEFAULT_MEMORY_MB.get(config.backend, 256)


def worker_vcpus(config: Any) -> float:
    section = dict(config.lithops_config.get(config.backend, {}) or {})
    return float(section.get("runtime_cpu", DEFAULT_VCPUS.get(config.backend, 1.0)))


@dataclasses.dataclass(frozen=True)
class JobCost:
    """Usage and estimated cost of one job."""

    job_id: str
    tasks: int
    invocations: int
    busy_s: float
    memory_mb: int
    gb_s: float
    vcpu_s: float
    #: The most idle warm time the job's invocations could add (idle_timeout each).
    idle_bound_gb_s: float
    provider: str
    cost_usd: float | None  # None: no price for the provider


def _per_job(records: Iterable[TaskRecord]) -> dict[str, list[TaskRecord]]:
    jobs: dict[str, list[TaskRecord]] = {}
    for r in records:
        jobs.setdefault(r.job_id, []).append(r)
    return jobs


def estimate(records: Iterable[TaskRecord], config: Any = None, provider: str | None = None) -> list[JobCost]:
    """Per-job usage and cost of *records* under *config* (default: the default context's).

    *provider* picks the price table entry; by default the config's backend,
    or :data:`REFERENCE_PROVIDER` for localhost ("what this would cost there").
    """
    if config is None:
        import faasmp  # noqa: PLC0415

        config = faasmp.get_context().config
    if provider is None:
        provider = REFERENCE_PROVIDER if config.is_local else config.backend
    provider = ALIASES.get(provider, provider)
    price = price_table(config.prices).get(provider)
    mem_mb = worker_memory_mb(config)
    vcpus = worker_vcpus(config)
    out = []
    for job_id, recs in _per_job(records).items():
        busy = sum(max(r.run_end - r.started, 0.0) for r in recs)
        invocations = len({r.host for r in recs}) or 1
        gb_s = busy * mem_mb / 1024
        vcpu_s = busy * vcpus
        cost = None
        if price is not None:
            cost = gb_s * price.gb_second + vcpu_s * price.vcpu_second + invocations * price.request
        out.append(
            JobCost(
                job_id=job_id,
                tasks=len(recs),
                invocations=invocations,
                busy_s=busy,
                memory_mb=mem_mb,
                gb_s=gb_s,
                vcpu_s=vcpu_s,
                idle_bound_gb_s=invocations * config.idle_timeout * mem_mb / 1024,
                provider=provider,
                cost_usd=cost,
            )
        )
    return out


def format_cost(costs: list[JobCost], config: Any = None) -> str:
    """One line per job plus a total: invocations, GB-s and the cost estimate."""
    if not costs:
        return "cost: no task records"
    local = config is not None and config.is_local
    lines = []
    for c in costs:
        money = "no price for this provider" if c.cost_usd is None else f"${c.cost_usd:.6f}"
        lines.append(
            f"cost job {c.job_id}: {c.tasks} tasks, {c.invocations} invocation(s), "
            f"{c.gb_s:.3f} GB-s ({c.memory_mb} MB x {c.busy_s:.2f} s busy) -> {money} at {c.provider}"
        )
    if len(costs) > 1:
        total = sum(c.cost_usd or 0.0 for c in costs)
        lines.append(
            f"cost total: {sum(c.gb_s for c in costs):.3f} GB-s -> ${total:.6f} at {costs[0].provider}"
        )
    where = "localhost is free; shown " if local else ""
    lines.append(
        f"({where}{PRICES_AS_OF}; warm idle time adds up to "
        f"{sum(c.idle_bound_gb_s for c in costs):.1f} GB-s; override with FAASMP_PRICES)"
    )
    return "\n".join(lines)


def cost_line(records: Iterable[TaskRecord], config: Any = None) -> str:
    """A one-line summary over all *records* (the dashboard's cost line)."""
    if config is None:
        import faasmp  # noqa: PLC0415

        config = faasmp.get_context().config
    costs = estimate(records, config)
    if not costs:
        return ""
    gb_s = sum(c.gb_s for c in costs)
    invocations = sum(c.invocations for c in costs)
    money = (
        "n/a" if any(c.cost_usd is None for c in costs) else f"${sum(c.cost_usd or 0.0 for c in costs):.6f}"
    )
    where = f"at {costs[0].provider} list prices" + (" (localhost is free)" if config.is_local else "")
    return (
        f"cost ≈ {money} {where}: {gb_s:.3f} GB-s, {invocations} invocation(s), "
        f"{costs[0].memory_mb} MB workers"
    )
