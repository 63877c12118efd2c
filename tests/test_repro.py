"""faasmp.repro: the experiment registry, results and the ``faasmp repro`` CLI."""

from __future__ import annotations

import csv
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from faasmp import repro
from faasmp.repro.core import Result, Row

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, tmp_path: Path, timeout: float = 100) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # Lithops localhost: a private work dir
    return subprocess.run(
        [sys.executable, "-m", "faasmp", "repro", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp_path,
    )


def test_every_experiment_is_a_module_with_run_and_title():
    for name, (module, description) in repro.EXPERIMENTS.items():
        mod = importlib.import_module(f"faasmp.repro.{module}")
        assert callable(mod.run), name
        assert mod.TITLE and description, name
    assert (ROOT / "notebooks" / "reproduction").is_dir()
    notebooks = {p.stem.split("_", 1)[1] for p in (ROOT / "notebooks" / "reproduction").glob("*.ipynb")}
    assert notebooks == set(repro.EXPERIMENTS), "one notebook per experiment"


def test_unknown_experiment_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown experiment 'nope'; known: overheads"):
        repro.run("nope")


def test_result_table_markdown_and_save(tmp_path):
    import plotly.graph_objects as go

    result = Result(
        "demo",
        "A demo",
        "small",
        [Row("latency", 1.0, 0.25, "ms", "a | pipe"), Row("skipped", 80.0, None, "GB/s")],
        {"bars": go.Figure(go.Bar(x=["a"], y=[1]))},
        notes="Why they differ.",
    )
    assert list(result.table.columns) == ["metric", "paper", "ours", "unit", "comment"]
    md = result.markdown()
    assert "| latency | 1 | 0.25 | ms | a / pipe |" in md
    assert "| skipped | 80 | — | GB/s |  |" in md
    assert md.rstrip().endswith("Why they differ.")
    files = result.save(tmp_path, png=False)
    assert {f.name for f in files} == {"demo.csv", "demo.md", "demo_bars.html"}
    rows = list(csv.DictReader((tmp_path / "demo.csv").open()))
    assert rows[0]["paper"] == "1.0" and rows[0]["ours"] == "0.25"
    assert "plotly" in (tmp_path / "demo_bars.html").read_text()


def test_cli_lists_experiments(tmp_path):
    out = _cli(tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    for name in repro.EXPERIMENTS:
        assert f"  {name} " in out.stdout
    assert _cli("list", tmp_path=tmp_path).stdout == out.stdout


def test_cli_unknown_experiment_fails_with_exit_2(tmp_path):
    out = _cli("nope", tmp_path=tmp_path)
    assert out.returncode == 2
    assert "unknown experiment 'nope'" in out.stderr


def test_cli_runs_an_experiment_and_writes_table_and_plot(tmp_path):
    out = _cli("pipes", "--out", "results", "--no-png", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    results = tmp_path / "results"
    assert sorted(p.name for p in results.iterdir()) == [
        "pipes.csv",
        "pipes.md",
        "pipes_per_message.html",  # Fig 4.3
        "pipes_pipes.html",
    ]
    rows = {r["metric"]: r for r in csv.DictReader((results / "pipes.csv").open())}
    rtt = rows["1-byte RTT, mean"]
    assert float(rtt["paper"]) == 1.0
    assert 0 < float(rtt["ours"]) < 1000  # ms; a real measurement, not asserted for speed
    assert "Pipe latency and throughput" in (results / "pipes.md").read_text()
    assert "| 1-byte RTT, mean | 1 |" in out.stdout


# --- gridsearch: SGDClassifier over a text pipeline on a generated corpus ---------------------


def test_gridsearch_corpus_is_reproducible_balanced_and_offline():
    from faasmp.repro import gridsearch

    docs, labels = gridsearch.corpus(400)
    assert (docs, labels) == gridsearch.corpus(400), "the same seed gives the same corpus"
    assert docs != gridsearch.corpus(400, seed=20)[0]
    assert {labels.count(t) for t in gridsearch.TOPICS} == {100}
    assert all(10 <= len(d.split()) <= 30 for d in docs)


def test_gridsearch_check_rejects_a_faked_differing_faasmp_score():
    """The checks compare every candidate's mean CV score with the serial run's (fault: one faked score)."""
    import copy

    from faasmp.repro import gridsearch

    _, serial = gridsearch.search(None, 1, False)
    assert gridsearch.check(serial, serial, serial)  # identical searches pass
    faked = copy.copy(serial)
    faked.cv_results_ = dict(serial.cv_results_)
    faked.cv_results_["mean_test_score"] = serial.cv_results_["mean_test_score"].copy()
    faked.cv_results_["mean_test_score"][0] += 0.01  # one fit came back different
    with pytest.raises(AssertionError, match="faasmp: every mean CV score equals the serial run's"):
        gridsearch.check(serial, serial, faked)
    lost = copy.copy(serial)
    lost.cv_results_ = {**serial.cv_results_, "mean_test_score": serial.cv_results_["mean_test_score"][:-1]}
    with pytest.raises(AssertionError, match="candidates scored"):
        gridsearch.check(serial, serial, lost)


# --- full mode: --dry-run --------------------------------------------------------------------


def test_cli_full_dry_run_prints_every_plan_and_a_cost_and_runs_nothing(tmp_path):
    out = _cli("all", "--full", "--dry-run", tmp_path=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "nothing is started" in out.stdout
    for name in repro.EXPERIMENTS:
        assert f"== {name} ==" in out.stdout
    assert out.stdout.count("invocations, ~") == len(repro.EXPERIMENTS)
    assert out.stdout.count(": ~$") == len(repro.EXPERIMENTS), "every experiment is priced"
    assert "total: ~" in out.stdout and "$" in out.stdout.splitlines()[-1]
    assert not (tmp_path / "repro-results").exists(), "a dry run writes no results"
    no_full = _cli("gridsearch", "--dry-run", tmp_path=tmp_path, timeout=60)
    assert no_full.returncode == 2 and "add --full" in no_full.stderr


def test_full_plans_cover_every_experiment_and_follow_the_modules():
    from sklearn.model_selection import ParameterGrid

    from faasmp.repro import gridsearch, plan

    assert set(plan.PLANS) == set(repro.EXPERIMENTS)
    assert all(p.invocations > 0 and p.busy_s > 0 and p.assumption for p in plan.PLANS.values())
    n_candidates = len(ParameterGrid(gridsearch.grid(True)))
    assert f"{n_candidates} candidates x 5 folds" in plan.PLANS["gridsearch"].what


def test_sentiment_scores_with_vader_from_its_wheel():
    from faasmp.repro import sentiment

    assert sentiment.score("The delivery was great and I love it") > 0.5
    assert sentiment.score("awful, broken and slow, I hate it") < -0.5
    assert sentiment.score("I do not love it") < 0 < sentiment.score("I love it"), "VADER handles negation"
    # VADER's own lexicon and rules, beyond the words the generated reviews use:
    assert sentiment.score("a wonderful, delightful gift") > 0.5 and sentiment.score("terrible :(") < -0.3
    assert sentiment.score("GREAT!!!") > sentiment.score("great") > 0, "caps and exclamation marks intensify"
    df = sentiment.make_reviews(200)
    signs = df["text"].apply(sentiment.score).gt(0).astype(int) * 2 - 1
    assert (signs == df["mood"]).mean() > 0.9


def test_evolution_scores_policies_on_gymnasium_cartpole():
    import numpy as np

    from faasmp.repro import evolution

    assert evolution.fitness(np.zeros(evolution.DIM), 500) == 10.0, "always pushing left falls at once"
    upright = np.array([0.0, 0.0, 1.0, 1.0])  # push towards the side the pole falls to
    assert evolution.fitness(upright, 200) == 200.0, "a balancing policy lasts the whole episode"
    assert evolution.fitness(upright, 200) == evolution.fitness(upright, 200), "one seeded episode"
    curve = evolution.es_loop(evolution._Serial(), {}, 2, 8, 200)
    assert curve[-1] > 10.0
