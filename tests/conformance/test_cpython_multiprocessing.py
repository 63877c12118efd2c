"""CPython's own multiprocessing tests on faasmp (opt-in: ``pytest -m conformance``).

Runs ``tests/conformance/run_cpython_suite.py --impl faasmp`` for each flavour
(``processes``, ``manager``) and fails when a test outside
``expected_failures.py`` fails, errors, hangs or crashes -- so a regression in
any module shows up as a named CPython test.  Expected failures that pass are
reported (prune the list), not failed.  A flavour takes a few minutes on two
cores; see docs/conformance.md.  The check that the expected-failure list
names real tests is cheap and runs by default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conformance.expected_failures import EXPECTED_FAILURES
from tests.conformance.run_cpython_suite import FAILING, list_tests

RUNNER = Path(__file__).with_name("run_cpython_suite.py")
#: Bound for one flavour: every test has its own 60 s limit inside the runner.
FLAVOUR_TIMEOUT = 45 * 60


def _run_suite(flavour: str, out: Path) -> dict:
    jobs = os.environ.get("FAASMP_CONFORMANCE_JOBS", "2")
    cmd = [sys.executable, str(RUNNER), "--impl", "faasmp", "--flavour", flavour, "--jobs", jobs]
    cmd += ["--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FLAVOUR_TIMEOUT - 60)
    assert proc.returncode == 0, f"runner failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    sys.stdout.write(proc.stdout)  # the summary table, shown with -s or on failure
    return json.loads(out.read_text())["runs"][f"faasmp/{flavour}"]


def test_expected_failures_name_real_tests() -> None:
    """Every id in the expected-failure tables names a test of this interpreter's suite."""
    known = {t for flavour in ("processes", "manager") for ids in list_tests(flavour).values() for t in ids}
    stale = sorted(set(EXPECTED_FAILURES) - known)
    assert not stale, f"expected_failures.py names tests that do not exist: {stale}"
    assert all(reason.strip() for reason in EXPECTED_FAILURES.values())


@pytest.mark.conformance
@pytest.mark.timeout(FLAVOUR_TIMEOUT)
@pytest.mark.parametrize("flavour", ["processes", "manager"])
def test_faasmp_passes_cpython_suite(flavour: str, tmp_path: Path) -> None:
    run = _run_suite(flavour, tmp_path / "conformance.json")
    tests = run["tests"]
    assert len(tests) == sum(len(ids) for ids in list_tests(flavour).values()), "some tests got no result"

    unexpected = {t: r for t, r in tests.items() if r["outcome"] in FAILING and t not in EXPECTED_FAILURES}
    newly_passing = sorted(t for t, r in tests.items() if r["outcome"] == "pass" and t in EXPECTED_FAILURES)
    if newly_passing:
        print(f"\nexpected failures that passed (remove them from expected_failures.py): {newly_passing}")
    report = "\n\n".join(f"{t}: {r['outcome']}\n{r['detail'][-1500:]}" for t, r in sorted(unexpected.items()))
    assert not unexpected, f"{len(unexpected)} CPython test(s) failed on faasmp, not expected:\n{report}"
