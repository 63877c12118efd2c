"""The performance suite's CI mode: every metric reported for every implementation, results correct.

Runs ``benchmarks/run_all.py --ci`` (tiny workloads, short limits, the three
implementations side by side) once and checks its JSON.  No timing is asserted:
the machine may be shared.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
IMPLS = ("stdlib", "lithops", "faasmp")


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--ci", "--no-png", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc: dict[str, Any] = json.loads((out / "results.json").read_text())
    doc["_stdout"] = proc.stdout
    doc["_out"] = out
    return doc


def _check_entry(entry: dict[str, Any], where: str) -> None:
    assert entry["status"] in ("ok", "timeout", "error"), where
    if entry["status"] == "ok":
        assert isinstance(entry["value"], (int, float)), where
        assert math.isfinite(entry["value"]) and entry["value"] >= 0, where
    else:
        assert entry.get("reason"), f"{where}: {entry['status']} without a reason"


@pytest.mark.timeout(300)
def test_every_metric_for_every_implementation(suite: dict[str, Any]) -> None:
    assert suite["meta"]["impls"] == list(IMPLS)
    assert set(suite["results"]) == set(suite["metrics"])
    for metric, per_impl in suite["results"].items():
        assert set(per_impl) == set(IMPLS), f"{metric}: {sorted(per_impl)}"
        for impl, entry in per_impl.items():
            _check_entry(entry, f"{metric}/{impl}")
    workers = [str(n) for n in suite["meta"]["params"]["scale_workers"]]
    for metric in suite["scaling_metrics"]:
        for impl in IMPLS:
            points = suite["scaling"][metric][impl]
            assert sorted(points) == sorted(workers), f"{metric}/{impl}"
            for n, entry in points.items():
                _check_entry(entry, f"{metric}/{impl}/n={n}")


#: Rows faasmp must finish even on a loaded machine (the cold-start and large-pool rows
#: may hit their limits there, like lithops.multiprocessing's).
FUNCTIONAL = ("pipe_rtt_p50", "pipe_mbps", "queue_mbps", "lock_us", "mgr_set_us", "mgr_get_us", "mc_s")
FUNCTIONAL += ("sort_shared_s", "sort_pipes_s", "tiny_map_small", "tiny_imapu_small", "process", "pool_mbps")


@pytest.mark.timeout(300)
def test_stdlib_and_faasmp_complete_and_are_correct(suite: dict[str, Any]) -> None:
    # Local processes must finish every row; lithops.multiprocessing may time out.
    for metric, per_impl in suite["results"].items():
        assert per_impl["stdlib"]["status"] == "ok", f"{metric}/stdlib: {per_impl['stdlib']}"
    for metric in FUNCTIONAL:
        entry = suite["results"][metric]["faasmp"]
        assert entry["status"] == "ok", f"{metric}/faasmp: {entry}"
    for impl in IMPLS:
        mc = suite["results"]["mc_s"][impl]
        if mc["status"] == "ok":
            assert abs(mc["pi"] - math.pi) < 0.05, f"{impl}: pi = {mc['pi']}"
        for metric in ("sort_shared_s", "sort_pipes_s"):
            res = suite["results"][metric][impl]
            if res["status"] == "ok":
                assert res["sorted"] is True and res["n"] == suite["meta"]["params"]["sort_n"]


@pytest.mark.timeout(300)
def test_table_targets_and_plots(suite: dict[str, Any]) -> None:
    out = suite["_stdout"]
    assert "faasmp/stdlib" in out and "faasmp/lithops" in out
    assert "targets (faasmp):" in out
    assert {t["target"] for t in suite["targets"]} >= {
        "Pipe 1-byte RTT p50 <= 200 us",
        "Monte Carlo efficiency >= 0.9 of stdlib",
    }
    if suite["results"]["first_map_8"]["faasmp"]["status"] == "ok":
        assert any(t["target"].startswith("first call") for t in suite["targets"])
    assert suite["table_markdown"].startswith("| metric |")
    for name in suite["plots"]["html"]:
        assert (suite["_out"] / name).stat().st_size > 1000
    assert set(suite["plots"]["html"]) == {"overview.html", "scaling.html", "latency.html"}
