"""faasmp.repro: scaling curves, Fig 4.1/4.3, full mode without empty cells, and the checks.

Issue 19.  The curves' arithmetic is tested on given times; one curve, Fig 4.1, Fig 4.3 and
each full-mode derivation run for real (real server, real Lithops localhost workers) at
sizes small enough for the default run.
"""

from __future__ import annotations

import csv
import importlib
import math

import pytest

from faasmp import repro
from faasmp.repro import paper, scaling

APPLICATIONS = {"montecarlo_pi", "shared_sort", "evolution", "sentiment", "gridsearch", "rl_pipes"}


def test_scaling_table_gives_speedups_vs_vm_and_where_this_machine_stops_informing():
    t = scaling.table({1: 1.0, 2: 0.5, 4: 0.4}, {1: 0.8, 2: 0.5}, n_cores=2, local=True)
    assert list(t.columns) == list(scaling.COLUMNS)
    assert t.workers.tolist() == [1, 2, 4]
    assert t.faasmp_speedup.tolist() == [1.0, 2.0, 2.5]
    assert t.stdlib_speedup.tolist()[:2] == [1.0, 1.6] and math.isnan(t.stdlib_speedup[2])
    assert t.vs_vm.tolist()[:2] == [0.8, 1.0] and math.isnan(t.vs_vm[2]), "stdlib time / faasmp time"
    assert t.faasmp_informative.tolist() == [True, True, False], "past 2 cores the workers time-share"
    cloud = scaling.table({1: 1.0, 4: 0.3}, {1: 1.0}, n_cores=2, local=False)
    assert cloud.faasmp_informative.tolist() == [True, True], "a cloud function per worker"
    assert cloud.stdlib_informative.tolist() == [True, False]
    with pytest.raises(ValueError, match=r"the faasmp times need a 1-worker run for speed-ups; got \[2, 4\]"):
        scaling.table({2: 1.0, 4: 0.5}, {}, n_cores=2, local=True)
    note = scaling.describe("evolution", t, 2, True)
    assert "2.50x on 4 workers" in note and "beyond 2 workers" in note and "53x on 1000 functions" in note
    slower = scaling.table({1: 1.0, 2: 1.5}, {1: 1.0}, n_cores=2, local=True)
    assert scaling.describe("sentiment", slower, 2, True).startswith(
        "On faasmp no worker count beat 1 worker"
    )


def test_every_application_has_the_papers_figures_and_a_measurement():
    assert set(paper.SCALING) == APPLICATIONS and APPLICATIONS <= set(repro.EXPERIMENTS)
    for name in APPLICATIONS:
        assert callable(importlib.import_module(f"faasmp.repro.{name}").measure_scaling), name
    es = paper.SCALING["evolution"]
    assert [(p.speedup, p.workers) for p in es.speedups] == [(53.0, 1000), (40.0, None)]
    assert es.vs_vm == (53.0 / 40.0,) * 2
    assert paper.SCALING["montecarlo_pi"].vs_vm == (1.20, 1.25)
    assert (
        paper.SCALING["shared_sort"].vs_vm == (14.3 / 17.3,) * 2
        and paper.SCALING["shared_sort"].vs_vm_workers == 64
    )
    assert paper.SCALING["rl_pipes"].vs_vm == (1 / 0.89,) * 2
    assert scaling.worker_counts("sentiment", False) == (1, 2, 4)
    assert scaling.worker_counts("evolution", True)[-1] == paper.ES_WORKERS
    assert scaling.stdlib_counts((1, 8, 32, 64, 128), 4) == [1, 8], (
        "the stdlib stops at twice the client's cores"
    )


# --- Result.checks: each fails when the values it compares differ -------------------------------


def test_rl_pipes_check_rejects_a_differing_learning_curve_and_lost_transitions():
    from faasmp.repro import rl_pipes

    curve = [12.5, 14.0, 19.25]
    sizes = {"workers": 2, "iterations": 3, "steps": 10}
    assert all(rl_pipes.check(60, curve, list(curve), **sizes).values())
    with pytest.raises(AssertionError, match="the same learning curve"):
        rl_pipes.check(60, curve, [12.5, 14.0, 19.5], **sizes)  # one batch learned differently
    with pytest.raises(AssertionError, match="the same learning curve"):
        rl_pipes.check(60, curve, curve[:2], **sizes)
    with pytest.raises(AssertionError, match="all 3 x 10 x 2 transitions collected"):
        rl_pipes.check(58, curve, list(curve), **sizes)


def test_sentiment_check_rejects_a_differing_reordered_or_lost_score():
    import pandas as pd

    from faasmp.repro import sentiment

    serial = pd.Series([0.5, -0.25, 0.75, 0.0])
    assert sentiment.check(serial, {"faasmp Pool": serial.copy(), "pandarallel on faasmp": None}) == {
        "faasmp Pool: all 4 scores equal the serial ones, in order": True
    }
    for faulty in ([0.5, -0.25, 0.7, 0.0], [-0.25, 0.5, 0.75, 0.0], [0.5, -0.25, 0.75]):
        with pytest.raises(AssertionError, match="stdlib Pool: all 4 scores equal the serial ones"):
            sentiment.check(serial, {"faasmp Pool": serial, "stdlib Pool": pd.Series(faulty)})


# --- Fig 4.1 and Fig 4.3 --------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_fig_4_1_moves_every_payload_through_redis_and_through_object_storage(default_ctx):
    from faasmp.repro import overheads

    times, ok = overheads.transport_overheads([1, 2], payload=4096)
    assert ok, "a payload came back different"
    assert set(times) == {"redis", "object storage"}
    assert all(list(t) == [1, 2] and min(t.values()) > 0 for t in times.values())
    fig = overheads.transport_figure(times)
    assert [tr.name for tr in fig.data] == ["via redis", "via object storage"]


def test_fig_4_3_plots_every_message_with_the_papers_means():
    from faasmp.repro import pipes

    fig = pipes.per_message_figure([0.3, 0.25, 2.0], [0.05, 0.04])
    assert [len(tr.y) for tr in fig.data] == [3, 2]
    assert sorted(s.y0 for s in fig.layout.shapes) == [paper.PIPE_RTT_VM_MS, paper.PIPE_RTT_MS]
    assert pipes.percentile([float(i) for i in range(100)], 0.99) == 99.0


# --- full mode: no empty cells ---------------------------------------------------------------


@pytest.mark.timeout(180)
def test_evolution_full_mode_derives_serial_and_stdlib_times_instead_of_leaving_them_empty(
    default_ctx, monkeypatch
):
    """Full mode's shape at a tiny size: the serial and stdlib runs do generation 1 only."""
    from faasmp.repro import evolution

    monkeypatch.setitem(evolution.SIZES, True, (2, 3, 8, 100))
    result = evolution.run(full=True)
    assert all(row.ours is not None for row in result.rows), result.markdown()
    rows = {row.metric: row for row in result.rows}
    assert rows["serial time"].comment.startswith("derived: generation 1 on this client")
    assert rows["stdlib Pool time"].comment.startswith("derived:")
    assert rows["speed-up vs serial, serverless"].ours > 0
    assert [len(c) for c in result.data["curves"].values()] == [1, 1, 3]
    assert "faasmp follows the serial run" in result.checks


@pytest.mark.timeout(180)
def test_montecarlo_full_mode_derives_the_vm_when_the_client_has_too_few_cores(default_ctx, monkeypatch):
    from faasmp.repro import montecarlo_pi

    too_many = 2 * scaling.cores() + 1  # more workers than the stdlib runs on this client
    monkeypatch.setitem(montecarlo_pi.POINTS, True, 2_000_000)
    monkeypatch.setitem(scaling.FULL_WORKERS, "montecarlo_pi", (1, too_many))
    result = montecarlo_pi.run(full=True)
    assert all(row.ours is not None for row in result.rows), result.markdown()
    rows = {row.metric: row for row in result.rows}
    vm = rows[f"stdlib Pool / VM time, {too_many} workers"]
    assert vm.comment.startswith("derived: this client's measured 1-core time")
    assert vm.ours == pytest.approx(result.data["stdlib"][1] / too_many)
    ratio = rows["serverless speed vs VM (VM time / serverless time)"]
    assert ratio.ours == pytest.approx(vm.ours / result.data["faasmp"][too_many])
    assert too_many not in result.data["stdlib"]


def test_full_dry_run_lists_the_derived_baselines_and_the_extra_figures():
    from faasmp.repro import plan

    text = plan.dry_run(list(repro.EXPERIMENTS))
    blocks = {b.split(" ==", 1)[0]: b for b in text.split("== ")[1:]}
    assert "generation 1 only" in blocks["evolution"] and "derived" in blocks["evolution"]
    assert "on the client (not billed)" in blocks["evolution"]
    assert "derived from the client's measured 1-core time" in blocks["montecarlo_pi"]
    assert "Fig 4.1" in blocks["overheads"] and "Fig 4.3" in blocks["pipes"]
    for name in paper.SCALING:
        assert "scaling curve" in blocks[name], name


@pytest.mark.timeout(200)
def test_cli_writes_an_applications_scaling_curve_beside_its_table(tmp_path):
    """The real measurement: shared_sort's curve through pipes on 1, 2 and 4 workers, both sides."""
    from tests.test_repro import _cli

    out = _cli("shared_sort", "--out", "results", "--no-png", tmp_path=tmp_path, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = list(csv.DictReader((tmp_path / "results" / "shared_sort_scaling.csv").open()))
    assert [int(r["workers"]) for r in rows] == [1, 2, 4]
    assert all(float(r["faasmp_s"]) > 0 and float(r["stdlib_s"]) > 0 for r in rows)
    assert float(rows[0]["faasmp_speedup"]) == 1.0 and float(rows[0]["stdlib_speedup"]) == 1.0
    assert [r["faasmp_informative"] for r in rows] == [str(w <= scaling.cores()) for w in (1, 2, 4)]
    assert "scaling (shared_sort):" in out.stdout and "17.3 s" in out.stdout, "the paper's figure in the note"
