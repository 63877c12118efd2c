"""Cost estimates from stats records: GB-seconds, invocations, price tables."""

from __future__ import annotations

import pytest

from faasmp import cost
from faasmp.config import Config
from faasmp.stats import TaskRecord
from faasmp_magics import dashboard as dash
from tests import helpers


def record(job: str, host: str, started: float, run_end: float) -> TaskRecord:
    return TaskRecord(
        job_id=job, task_id=f"{job}:{started}", kind="pool", worker="w", host=host,
        submitted=started - 0.01, uploaded=started - 0.005, started=started, run_start=started + 0.001,
        run_end=run_end, received=run_end + 0.002, serialize_s=0.0001, peak_rss=1, cpu_s=0.1, ok=True,
    )  # fmt: skip


CLOUD = Config(backend="aws_lambda", redis_url="rediss://:pw@redis.example.com:6380/0", worker_memory_mb=1024)


def test_gb_seconds_invocations_and_cost_per_job():
    recs = [record("j1", "h1", 0.0, 2.0), record("j1", "h2", 0.0, 1.0), record("j2", "h1", 5.0, 5.5)]
    j1, j2 = cost.estimate(recs, CLOUD)
    assert (j1.tasks, j1.invocations, j2.invocations) == (2, 2, 1)
    assert j1.gb_s == pytest.approx(3.0)  # 1 GB x (2 s + 1 s)
    price = cost.DEFAULT_PRICES["aws_lambda"]
    assert j1.cost_usd == pytest.approx(3.0 * price["gb_second"] + 2 * price["request"])
    assert j1.idle_bound_gb_s == pytest.approx(2 * CLOUD.idle_timeout * 1.0)
    text = cost.format_cost([j1, j2], CLOUD)
    assert "cost job j1: 2 tasks, 2 invocation(s), 3.000 GB-s" in text and "cost total" in text
    assert "check your provider" in text


def test_memory_comes_from_the_lithops_runtime_memory_when_not_set():
    cfg = CLOUD.replace(worker_memory_mb=0, lithops_config={"aws_lambda": {"runtime_memory": 2048}})
    assert cost.worker_memory_mb(cfg) == 2048
    assert cost.worker_memory_mb(CLOUD.replace(worker_memory_mb=0)) == cost.DEFAULT_MEMORY_MB["aws_lambda"]


def test_price_overrides_and_aliases():
    cfg = CLOUD.replace(backend="code_engine", prices={"ibm_ce": {"gb_second": 1.0, "request": 0.5}})
    (job,) = cost.estimate([record("j", "h", 0.0, 1.0)], cfg)
    assert job.provider == "code_engine"
    vcpu = cost.DEFAULT_PRICES["code_engine"]["vcpu_second"]
    assert job.cost_usd == pytest.approx(1.0 * 1.0 + 1.0 * cost.DEFAULT_VCPUS["code_engine"] * vcpu + 0.5)
    with pytest.raises(ValueError, match="unknown field"):
        cost.price_table({"aws_lambda": {"per_gb": 1}})


def test_provider_without_a_price_gives_usage_only():
    cfg = CLOUD.replace(backend="k8s")
    (job,) = cost.estimate([record("j", "h", 0.0, 1.0)], cfg)
    assert job.cost_usd is None and job.gb_s == pytest.approx(1.0)
    assert "no price for this provider" in cost.format_cost([job], cfg)


def test_prices_setting_from_the_environment():
    from faasmp import config

    cfg = config.load(
        {"FAASMP_PRICES": '{"aws_lambda": {"gb_second": 0.5}}', "FAASMP_WORKER_MEMORY_MB": "512"}
    )
    assert cfg.prices == {"aws_lambda": {"gb_second": 0.5}} and cfg.worker_memory_mb == 512
    with pytest.raises(ValueError, match="FAASMP_PRICES must be a JSON object"):
        config.load({"FAASMP_PRICES": "cheap"})


def test_estimate_of_a_real_job_and_the_dashboard_cost_line(ctx):
    with ctx.Pool(2) as p:
        assert p.map(helpers.square, range(6), chunksize=1) == [x * x for x in range(6)]
    records = ctx.stats.last()
    assert records
    (job,) = cost.estimate(records, ctx.config)
    assert job.tasks == len(records) and job.invocations >= 1
    busy = sum(r.run_end - r.started for r in records)
    assert job.gb_s == pytest.approx(busy * cost.worker_memory_mb(ctx.config) / 1024)
    assert job.provider == cost.REFERENCE_PROVIDER  # localhost runs are priced "as if" on Lambda
    from faasmp.stats import JobStarted, TaskFinished

    model = dash.DashboardModel(follow_all=True)
    model.on_event(JobStarted(records[0].job_id, "pool", len(records), records[0].submitted))
    for r in records:
        model.on_event(TaskFinished(r))
    snap = model.snapshot()
    assert "cost ≈ $" in dash.text_report(snap) and "faasmp-cost" in dash.summary_html(snap)
